"""SwiftShader, the software Vulkan driver LiteRT's GPU accelerator runs on here: where it lives and
how a process starts using it. The one place that sets the driver up, for both the GPU-delegate
check (export.checks.litert_gpu's child process) and the emulated GPU timing (tflite GpuSession).

Standard library only: the check's child process imports it before anything else.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

SETUP_SCRIPT = "scripts/setup_swiftshader.sh"
DRIVER_FILES = ("libvk_swiftshader.so", "vk_swiftshader_icd.json", "libvulkan.so.1")


class SwiftShaderMissingError(FileNotFoundError):
    """SwiftShader (the software Vulkan driver) is not installed where the tools live."""


def tools_dir() -> Path:
    """Where the project's external tools live (`$FREENET_TOOLS`, default ~/.cache/freenet-deploy)."""
    return Path(os.environ.get("FREENET_TOOLS") or Path.home() / ".cache" / "freenet-deploy")


def swiftshader_dir(root: Path | None = None) -> Path:
    """The SwiftShader folder; raises with the install command when any driver file is missing."""
    folder = (root or tools_dir()) / "swiftshader"
    missing = [name for name in DRIVER_FILES if not (folder / name).is_file()]
    if missing:
        raise SwiftShaderMissingError(
            f"SwiftShader is not installed in {folder} (missing: {', '.join(missing)}); "
            f"run `bash {SETUP_SCRIPT}` (honours $FREENET_TOOLS)"
        )
    return folder


def driver_version(folder: Path) -> str | None:
    version_file = folder / "VERSION"
    return version_file.read_text().strip() if version_file.is_file() else None


_ACTIVE: Path | None = None


def use_swiftshader(folder: Path | None = None) -> Path:
    """Point this process's Vulkan loader at SwiftShader; call before LiteRT creates a GPU model.

    VK_DRIVER_FILES is the current loader variable, VK_ICD_FILENAMES what older loaders read; the
    loader library is loaded with global symbols because Dawn (inside LiteRT) looks it up by name
    rather than linking it. Idempotent within a process.
    """
    global _ACTIVE
    folder = Path(folder) if folder is not None else swiftshader_dir()
    if _ACTIVE is not None:
        if _ACTIVE != folder:
            raise RuntimeError(f"this process already uses SwiftShader from {_ACTIVE}, not {folder}")
        return folder
    icd = str(folder / "vk_swiftshader_icd.json")
    os.environ["VK_DRIVER_FILES"] = icd
    os.environ["VK_ICD_FILENAMES"] = icd
    ctypes.CDLL(str(folder / "libvulkan.so.1"), mode=ctypes.RTLD_GLOBAL)
    _ACTIVE = folder
    return folder
