# Shared by scripts/demo and scripts/test: install what is missing, say exactly what to run when we cannot.

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        return 1
    fi
}

# ensure_apt PACKAGE...: apt-get install the Debian packages that are not installed yet.
ensure_apt() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${missing[*]}"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        || ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
        echo "Could not install ${missing[*]} (no root and no password-less sudo). Run:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
}

# ensure_venv [EXTRA]: a .venv with opsctl installed from this checkout (EXTRA: e.g. test).
ensure_venv() {
    local extra=${1:-}
    if [ ! -x .venv/bin/python ]; then
        echo "==> creating .venv"
        python3 -m venv .venv 2>/dev/null || { ensure_apt python3-venv; rm -rf .venv; python3 -m venv .venv; }
    fi
    echo "==> installing Python dependencies into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}" \
        || { echo "pip could not install opsctl's dependencies; run: .venv/bin/pip install -e '.[test]'" >&2; exit 1; }
}
