"""Make Mooncake's client listeners bind one address instead of every interface.

Mooncake's transfer engine has no setting for the address its listeners bind: the RPC /
handshake port (``findAvailableTcpPort`` and ``SocketHandShakePlugin::startDaemon`` in
``mooncake-transfer-engine/src/transfer_metadata_plugin.cpp``) binds ``INADDR_ANY``, and the
TCP transport (``TcpContext`` in ``src/transport/tcp_transport/tcp_transport_session_impl.h``)
binds ``[::]`` dual-stack. ``MC_TCP_BIND_ADDRESS`` only changes the address it *advertises*,
and only without P2P handshake (``transfer_engine_impl.cpp``). So this module rewrites the
wildcard ``bind()`` calls of Mooncake's own libraries: each library's GOT slot for ``bind``
(resolved at load, Python dlopens with RTLD_NOW) is pointed at a small function that replaces
``0.0.0.0`` / ``::`` with the address in force and calls the original. Binds to a specific
address pass unchanged; nothing outside Mooncake's libraries is touched.

Inside ``confine(address)`` a wildcard bind goes to ``address`` (``None``: left as it is, every
interface); outside any ``confine`` it goes to 127.0.0.1, so a late listener is loopback too.
``install()`` refuses (``MooncakeError``) where it cannot hook every library, and the store
checks its own listeners after ``setup`` as well, so a failure is an error, never an exposure.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from specforge_mooncake.errors import MooncakeError

_DEFAULT = "127.0.0.1"
_SLOT_TYPES = {62: (6, 7), 183: (1025, 1026)}  # e_machine -> (GLOB_DAT, JUMP_SLOT): x86-64, aarch64
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT = {"strtab": 5, "symtab": 6, "rela": 7, "relasz": 8, "jmprel": 23, "pltrelsz": 2}
_RTLD_DI_LINKMAP = 2
_PROT = {"r": 1, "w": 2, "x": 4}

_BIND = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, use_errno=True)
_libc = ctypes.CDLL(None, use_errno=True)

_lock = threading.RLock()  # held for a whole confine(); the hook itself only reads _address
_address: str | None = _DEFAULT
_originals: dict[str, int] = {}  # library path -> its load base, once its slots point at the hook
_hook = None  # the ctypes callback, kept alive for as long as the process runs
_real = None


def bind_slots(path: Path) -> list[int]:
    """Offsets (from the load base) of ``path``'s relocated pointers to an undefined ``bind``."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise MooncakeError(f"{path}: not a little-endian 64-bit ELF library; cannot confine its listeners")
    machine = struct.unpack_from("<H", data, 18)[0]
    if machine not in _SLOT_TYPES:
        raise MooncakeError(f"{path}: machine type {machine} is not supported for confining Mooncake's listeners")
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []

    def offset(vaddr: int) -> int:
        for start, off, size in loads:
            if start <= vaddr < start + size:
                return off + vaddr - start
        raise MooncakeError(f"{path}: address {vaddr:#x} is in no loaded segment")

    tags: dict[int, int] = {}
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == 0:
            break
        tags.setdefault(tag, value)
    if _DT["symtab"] not in tags or _DT["strtab"] not in tags:
        return []
    symtab, strtab = offset(tags[_DT["symtab"]]), offset(tags[_DT["strtab"]])
    kinds = _SLOT_TYPES[machine]
    slots = []
    for table, size in ((_DT["rela"], _DT["relasz"]), (_DT["jmprel"], _DT["pltrelsz"])):
        if table not in tags:
            continue
        start = offset(tags[table])
        for pos in range(start, start + tags.get(size, 0), 24):
            r_offset, r_info, _ = struct.unpack_from("<QQq", data, pos)
            if r_info & 0xFFFFFFFF not in kinds:
                continue
            st_name, _, _, st_shndx = struct.unpack_from("<IBBH", data, symtab + (r_info >> 32) * 24)
            end = data.index(b"\0", strtab + st_name)
            if st_shndx == 0 and data[strtab + st_name:end] == b"bind":
                slots.append(r_offset)
    return slots


def _load_base(path: Path) -> int:
    """Where the already loaded ``path`` sits in memory (its link_map's l_addr)."""
    try:
        handle = ctypes.CDLL(str(path), mode=os.RTLD_NOLOAD | os.RTLD_NOW)._handle
    except OSError as exc:
        raise MooncakeError(f"{path} is not loaded in this process; cannot confine its listeners") from exc
    link_map = ctypes.c_void_p()
    try:
        dlinfo = _libc.dlinfo
    except AttributeError:  # glibc < 2.34 keeps it in libdl
        dlinfo = ctypes.CDLL("libdl.so.2").dlinfo
    if dlinfo(ctypes.c_void_p(handle), _RTLD_DI_LINKMAP, ctypes.byref(link_map)) != 0:
        raise MooncakeError(f"dlinfo failed for {path}; cannot confine its listeners")
    return ctypes.c_size_t.from_address(link_map.value).value


def _protection(address: int) -> int:
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, perms = line.split()[:2]
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= address < high:
            return sum(_PROT[c] for c in perms[:3] if c in _PROT)
    raise MooncakeError(f"address {address:#x} is not mapped")


def _write_pointer(address: int, value: int) -> None:
    """Store ``value`` at ``address``, lifting a read-only (RELRO) page's protection for the write."""
    page = address & ~(os.sysconf("SC_PAGE_SIZE") - 1)
    size = os.sysconf("SC_PAGE_SIZE") * 2  # the 8 bytes may straddle pages only if misaligned; be safe
    prot = _protection(address)
    writable = prot & _PROT["w"]
    if not writable and _libc.mprotect(ctypes.c_void_p(page), size, prot | _PROT["w"]) != 0:
        raise MooncakeError(f"mprotect failed (errno {ctypes.get_errno()}); cannot confine Mooncake's listeners")
    ctypes.c_void_p.from_address(address).value = value
    if not writable:
        _libc.mprotect(ctypes.c_void_p(page), size, prot)


def _rewrite(addr: int, length: int) -> ctypes.Array | None:
    """A copy of the sockaddr with its wildcard address replaced, or None to bind it unchanged."""
    target = _address
    if target is None or not addr:
        return None
    family = ctypes.c_ushort.from_address(addr).value
    raw = ctypes.string_at(addr, length)
    if family == socket.AF_INET and length >= 16 and raw[4:8] == bytes(4):
        out = raw[:4] + ipaddress.IPv4Address(target).packed + raw[8:]
    elif family == socket.AF_INET6 and length >= 24 and raw[8:24] == bytes(16):
        mapped = ipaddress.IPv6Address(f"::ffff:{target}")  # dual-stack stays reachable over IPv4
        out = raw[:8] + mapped.packed + raw[24:]
    else:
        return None
    return ctypes.create_string_buffer(out, length)


def _bind(fd: int, addr: int, length: int) -> int:
    try:
        copy = _rewrite(addr, length)
    except Exception:  # never let a wildcard bind through on an error of ours
        ctypes.set_errno(13)  # EACCES
        return -1
    return _real(fd, copy if copy is not None else addr, length)


def mooncake_libraries() -> list[Path]:
    """The loaded shared objects of the installed ``mooncake`` package (and its bundled libraries)."""
    import importlib.util

    spec = importlib.util.find_spec("mooncake")
    folders = [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    roots = folders + [libs.resolve() for f in folders for libs in f.parent.glob("mooncake*.libs")]
    found: list[Path] = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        path = Path(parts[5])
        if path not in found and any(root == path.parent for root in roots):
            found.append(path)
    return found


def install() -> None:
    """Hook ``bind`` in every loaded Mooncake library (call after importing ``mooncake.store``)."""
    global _hook, _real
    with _lock:
        libraries = [p for p in mooncake_libraries() if str(p) not in _originals]
        if _hook is None:
            _hook = _BIND(_bind)
        hook = ctypes.cast(_hook, ctypes.c_void_p).value
        for path in libraries:
            base = _load_base(path)
            for slot in bind_slots(path):
                current = ctypes.c_void_p.from_address(base + slot).value
                if current == hook:
                    continue
                if _real is None:
                    _real = _BIND(current)
                elif current != ctypes.cast(_real, ctypes.c_void_p).value:
                    raise MooncakeError(f"{path} calls a bind() other than the process's own ({current:#x}); "
                                        f"cannot confine Mooncake's listeners")
                _write_pointer(base + slot, hook)
            _originals[str(path)] = base
        if _real is None:
            names = ", ".join(p.name for p in libraries) or "none"
            raise MooncakeError(f"none of Mooncake's loaded libraries ({names}) calls bind() through a slot this "
                                f"module can redirect, so its listeners cannot be kept off other interfaces; set "
                                f"store.listen_host=0.0.0.0 to run exposed anyway")


@contextlib.contextmanager
def confine(address: str | None) -> Iterator[None]:
    """Wildcard binds by Mooncake's libraries go to ``address`` (IPv4; None = every interface) inside."""
    global _address
    if address is not None:
        ipaddress.IPv4Address(address)  # only IPv4: Mooncake's handshake socket is AF_INET
    with _lock:
        if address is not None:
            install()  # every interface needs no rewrite (nor a platform that allows one)
        previous, _address = _address, address
        try:
            yield
        finally:
            _address = previous
