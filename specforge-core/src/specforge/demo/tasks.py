"""Synthetic chat tasks a tiny model learns in minutes: the demo's train and held-out splits.

Every answer is a fixed function of the prompt's parameters, wrapped in templated prose, so a
small target learns it quickly and a draft has long predictable stretches to accept. The
splits are disjoint by user message. Arithmetic and greeting facts recur across splits under
other wordings (a lookup table cannot be generalised); copy, reverse and sort held-out prompts
are mostly item lists never seen in training.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DIGITS = tuple("0123456789")
WORDS = ("ant", "bee", "cat", "cow", "dog", "elk", "emu", "fox", "hen", "owl",
         "pig", "ram", "rat", "yak", "bat", "eel")
NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
         "Karl", "Laura", "Mallory", "Nina", "Oscar", "Peggy", "Quinn", "Rupert", "Sybil", "Trent",
         "Uma", "Victor", "Wendy", "Xena", "Yusuf", "Zoe", "Anna", "Ben", "Chloe", "Omar")
HOBBIES = ("chess", "music", "painting", "running", "cooking", "reading", "hiking", "swimming",
           "gardening", "dancing", "cycling", "fishing")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
OPS = {"+": ("plus", lambda a, b: a + b), "-": ("minus", lambda a, b: a - b)}


@dataclass(frozen=True)
class Conversation:
    """One single-turn chat; ``task`` is kept in the id so the JSONL stays plain OpenAI format."""

    id: str
    task: str
    user: str
    assistant: str

    def to_record(self) -> dict:
        return {"id": self.id, "messages": [{"role": "user", "content": self.user},
                                            {"role": "assistant", "content": self.assistant}]}


# ------------------------------------------------------------------------------------ tasks
# Each task draws one (user, assistant) pair from the random generator.

def arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b, op = rng.randrange(10), rng.randrange(10), rng.choice(sorted(OPS))
    word, fn = OPS[op]
    result = fn(a, b)
    user = rng.choice(("What is {a}{op}{b}?", "Compute {a} {op} {b}.", "Please calculate {a}{op}{b}.",
                       "How much is {a} {op} {b}?", "Solve {a}{op}{b} for me.", "Tell me {a} {op} {b}.")
                      ).format(a=a, b=b, op=op)
    answer = (f"{NUMBER_WORDS[a].capitalize()} {word} {NUMBER_WORDS[b]} gives {result}. "
              f"So {a} {op} {b} = {result}.")
    return user, answer


def _items(rng: random.Random) -> list[str]:
    pool = DIGITS if rng.random() < 0.5 else WORDS
    return rng.sample(pool, rng.randint(3, 5))


def copy(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    text = " ".join(items)
    user = rng.choice(("Repeat after me: {t}", "Copy this list: {t}", "Say it back: {t}")).format(t=text)
    return user, f"Sure, here it is again: {text}. That list has {NUMBER_WORDS[len(items)]} items."


def reverse(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    user = rng.choice(("Reverse this list: {t}", "Reverse the order of: {t}",
                       "Write backwards: {t}")).format(t=" ".join(items))
    return user, (f"The list in reverse order is: {' '.join(reversed(items))}. "
                  f"The first item is now {items[-1]}.")


def sort(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    user = rng.choice(("Sort this list: {t}", "Put in order: {t}",
                       "Sort these items: {t}")).format(t=" ".join(items))
    ordered = sorted(items)
    return user, f"In sorted order the list is: {' '.join(ordered)}. The smallest item is {ordered[0]}."


def greeting(rng: random.Random) -> tuple[str, str]:
    name, hobby = rng.choice(NAMES), rng.choice(HOBBIES)
    user = rng.choice(("Hi, I am {n} and I like {h}.", "Hello! My name is {n}. I enjoy {h}.",
                       "Hey there, {n} here. I love {h}.", "Good day! I'm {n} and my hobby is {h}.")
                      ).format(n=name, h=hobby)
    return user, (f"Hello, {name}! It is nice to meet you. {hobby.capitalize()} sounds like fun. "
                  "How can I help you today?")


TaskFn = Callable[[random.Random], tuple[str, str]]
TASKS: dict[str, TaskFn] = {"arithmetic": arithmetic, "copy": copy, "reverse": reverse,
                            "sort": sort, "greeting": greeting}


# ------------------------------------------------------------------------------------ splits

def build_splits(seed: int, train_per_task: dict[str, int], heldout_per_task: int
                 ) -> tuple[list[Conversation], list[Conversation]]:
    """Unique user prompts per task, dealt into a held-out and a train split (shuffled, disjoint)."""
    rng = random.Random(seed)
    train: list[tuple[str, str, str]] = []
    heldout: list[tuple[str, str, str]] = []
    for task in sorted(train_per_task):
        fn, want = TASKS[task], train_per_task[task] + heldout_per_task
        pairs: dict[str, str] = {}
        tries = 0
        while len(pairs) < want:
            user, answer = fn(rng)
            pairs.setdefault(user, answer)
            tries += 1
            if tries > 50 * want:
                raise ValueError(f"task {task!r} has fewer than {want} distinct prompts; lower its count")
        items = [(task, user, answer) for user, answer in pairs.items()]
        rng.shuffle(items)
        heldout += items[:heldout_per_task]
        train += items[heldout_per_task:]
    rng.shuffle(train)
    rng.shuffle(heldout)
    return _number("train", train), _number("heldout", heldout)


def _number(split: str, rows: Sequence[tuple[str, str, str]]) -> list[Conversation]:
    return [Conversation(f"{split}-{i:05d}-{task}", task, user, answer)
            for i, (task, user, answer) in enumerate(rows)]


def task_of(conversation_id: str) -> str:
    """The task name a demo conversation id carries (``train-00012-sort`` -> ``sort``)."""
    return conversation_id.rsplit("-", 1)[-1]


def write_jsonl(conversations: Iterable[Conversation], path: Path) -> None:
    """One OpenAI ``messages`` record per line; byte-stable (sorted keys off, fixed separators)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for conv in conversations:
            f.write(json.dumps(conv.to_record(), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[Conversation]:
    """Read a demo split back (the id carries the task)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            msgs = rec["messages"]
            out.append(Conversation(rec["id"], task_of(rec["id"]), msgs[0]["content"], msgs[1]["content"]))
    return out
