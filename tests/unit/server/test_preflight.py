"""Start-up checks: a private runtime directory, bindable ports, usable tokens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reco.settings import SettingError
from server.preflight import check_bindable, private_runtime_dir, read_token


def test_the_runtime_dir_is_created_private_and_refused_when_shared(tmp_path: Path) -> None:
    created = private_runtime_dir(tmp_path / "run")
    assert created.stat().st_mode & 0o777 == 0o700
    assert private_runtime_dir(created) == created  # an existing private one is fine
    created.chmod(0o755)
    with pytest.raises(SettingError, match=r"--runtime-dir .* is not private"):
        private_runtime_dir(created)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(SettingError, match="not private"):
        private_runtime_dir(link)


def test_a_port_in_use_names_the_port_flag() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        with pytest.raises(SettingError, match=f"^--metrics-port {taken}: .* already in use"):
            check_bindable("127.0.0.1", taken, "--metrics-port", "--host")
    check_bindable("127.0.0.1", taken, "--metrics-port", "--host")  # free again


def test_an_address_of_another_machine_names_the_host_flag() -> None:
    with pytest.raises(SettingError, match=r"^--host 203\.0\.113\.7: cannot listen there"):
        check_bindable("203.0.113.7", 50999, "--port", "--host")


def test_tokens_must_be_long_single_words(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("a" * 32 + "\n")
    assert read_token(path) == "a" * 32
    for text in ("short", "two words but long enough"):
        path.write_text(text)
        with pytest.raises(SettingError, match="--admin-token-file"):
            read_token(path)
