"""Print pip constraints pinning the Debian-packaged dependencies this Python already has.

Debian builds python3-cffi, python3-psutil and python3-yaml for every architecture, while PyPI
has no armv7 wheel of them. A venv made with --system-site-packages sees them; pinning them to
the installed version keeps pip from building newer ones from source. Run it with the Python the
venv is made from: probes/pi/install.sh and probes/docker/build-wheels.sh do.
"""

import importlib.metadata

for name in ("cffi", "psutil", "PyYAML"):
    try:
        print(f"{name}=={importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        pass
