"""`specforge demo build` and the torch-free surface `specforge run --plan` relies on."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from specforge.commands.demo import command


def test_command_module_and_target_description_import_no_torch():
    code = ("import sys, specforge.commands.demo, specforge.demo.assets as a; info = a.demo_target_info(); "
            "assert info.num_layers >= 8 and info.mask_token_id == 3, info; "
            "heavy = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_build_reports_where_and_how_accurate(demo_assets):
    result = CliRunner().invoke(command, ["build", "--cache-dir", str(demo_assets.root.parent), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "already built" in result.output
    assert str(demo_assets.target_dir) in result.output
    assert f"{demo_assets.accuracy:.3f}" in result.output
