"""The one list of system packages: what `make run`/`make test` install and what doctor reports."""

from __future__ import annotations

import dataclasses

import pytest

from servers import doctor, system_packages


def _all_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tuple(dataclasses.replace(p, present=lambda: False) for p in system_packages.PACKAGES)
    monkeypatch.setattr(system_packages, "PACKAGES", absent)


def test_run_needs_a_subset_of_test() -> None:
    run = {p.debian for p in system_packages.PACKAGES if p.purpose == "run"}
    assert {"bubblewrap", "libseccomp2", "tesseract-ocr", "tesseract-ocr-chi-sim"} <= run
    assert "docker-compose" in {p.debian for p in system_packages.PACKAGES if p.purpose == "test"}


def test_non_root_stops_at_once_with_the_one_command(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _all_missing(monkeypatch)
    monkeypatch.setattr(system_packages.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(system_packages, "package_manager", lambda: "apt-get")
    monkeypatch.setattr(system_packages, "install", lambda packages: pytest.fail("must not install as non-root"))
    assert system_packages.main(["--for", "run"]) == 1
    err = capsys.readouterr().err
    assert ("sudo apt-get install -y --no-install-recommends bubblewrap libseccomp2 tesseract-ocr "
            "tesseract-ocr-chi-sim\n") in err
    assert "docker-compose" not in err  # only what running the servers needs


def test_dnf_names_and_check_mode(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _all_missing(monkeypatch)
    monkeypatch.setattr(system_packages.os, "geteuid", lambda: 0)
    monkeypatch.setattr(system_packages, "package_manager", lambda: "dnf")
    monkeypatch.setattr(system_packages, "install", lambda packages: pytest.fail("--check never installs"))
    assert system_packages.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "dnf install -y tesseract-langpack-chi_sim" in err and "sudo" not in err


def test_root_installs_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: set[str] = set()
    packages = tuple(dataclasses.replace(p, present=(lambda name=p.debian: name in installed or name == "make"))
                     for p in system_packages.PACKAGES)
    monkeypatch.setattr(system_packages, "PACKAGES", packages)
    monkeypatch.setattr(system_packages.os, "geteuid", lambda: 0)
    calls: list[list[str]] = []

    def fake_install(needed: list[system_packages.SystemPackage]) -> None:
        calls.append([p.debian for p in needed])
        installed.update(p.debian for p in needed)

    monkeypatch.setattr(system_packages, "install", fake_install)
    assert system_packages.main(["--for", "test"]) == 0
    assert calls == [["bubblewrap", "libseccomp2", "tesseract-ocr", "tesseract-ocr-chi-sim", "docker-compose",
                      "haproxy", "flite", "espeak-ng"]]
    assert system_packages.main(["--for", "test"]) == 0  # idempotent: nothing left to install
    assert len(calls) == 1


def test_doctor_reports_missing_packages_in_the_same_words(monkeypatch: pytest.MonkeyPatch) -> None:
    _all_missing(monkeypatch)
    monkeypatch.setattr(system_packages, "package_manager", lambda: "apt-get")
    rows = [r for r in doctor.collect() if r.item.startswith("system package")]
    python_packages = [p for p in system_packages.PACKAGES if p.debian in ("bubblewrap", "libseccomp2")]
    python_rows = [r for r in rows if r.server == "tool-python"]
    assert [(r.status, r.detail) for r in python_rows] == [("missing", system_packages.missing_line(p))
                                                            for p in python_packages]
    assert {r.server for r in rows if "tesseract" in r.item} == set(system_packages.OCR_SERVERS)
