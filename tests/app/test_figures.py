"""Docs figures are the dashboard's own charts, exported as PNG with their verdict lines."""

from __future__ import annotations

from app.figures import export_experiment, main


def test_export_writes_a_png_and_a_verdict_per_group(stores, tmp_path, capsys) -> None:
    lines = export_experiment(stores.main, "mup-demo", tmp_path)
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == len(lines) == 2  # SP and muP along width
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)
    text = "\n".join(lines)
    assert "fails: drift -0.700" in text and "param.name=sp" in text
    # an experiment that cannot be analysed is reported, not fatal
    assert main(["--out", str(tmp_path / "all"), "--tracking-uri", stores.main, "--only", "mup-demo,empty"]) == 0
    assert "### mup-demo" in capsys.readouterr().out
