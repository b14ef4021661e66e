"""`freenet token create/list/revoke` through typer (the commands the operator runs)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from device_bench.cli import register
from device_bench.store import Store


def test_token_commands_round_trip(tmp_path):
    app = typer.Typer()
    register(app)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    created = runner.invoke(app, ["token", "create", "--device", "pixel8-lab", "--db", db])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("fnt_")
    with Store(db) as s:
        info = s.lookup_token(token)
        assert info is not None and not info.revoked
    listed = runner.invoke(app, ["token", "list", "--db", db])
    assert info.id in listed.stdout and "pixel8-lab" in listed.stdout and token not in listed.stdout
    revoked = runner.invoke(app, ["token", "revoke", info.id, "--db", db])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    with Store(db) as s:
        assert s.lookup_token(token).revoked
    missing = runner.invoke(app, ["token", "revoke", "tok_000000000000", "--db", db])
    assert missing.exit_code != 0
