# Shared by scripts/run and scripts/test: install what is missing on a Debian/Ubuntu machine,
# skip what is already there. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# apt_need PKG...: installs the packages that are not installed yet.
apt_need() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# The Rust toolchain: rustup's stable (Debian's cargo is too old for edition 2024).
rust_need() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if ! command -v cargo >/dev/null 2>&1; then
    say "installing Rust (rustup, stable)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | sh -s -- -y --profile minimal --default-toolchain stable -c rustfmt,clippy
    . "$HOME/.cargo/env"
  fi
  local have
  have="$(rustc --version | awk '{print $2}')"
  if [ "$(printf '%s\n1.88.0\n' "$have" | sort -V | head -n1)" != "1.88.0" ]; then
    say "Rust $have is older than 1.88; updating"
    rustup update stable
  fi
  if command -v rustup >/dev/null 2>&1; then
    for c in rustfmt clippy; do
      rustup component list --installed 2>/dev/null | grep "^$c" >/dev/null || rustup component add "$c"
    done
  fi
}

base_need() {
  apt_need build-essential pkg-config ca-certificates curl git
  rust_need
}

# What the call engine builds against: nasm and cmake for the bundled OpenH264 and Opus,
# Debian's libvpx for VP8, Debian's libwebrtc-audio-processing (echo cancellation), ALSA for microphones and speakers (cpal), and libclang for the
# Video4Linux bindings cameras go through (nokhwa).
media_need() {
  apt_need nasm cmake libvpx-dev libasound2-dev libclang-dev libwebrtc-audio-processing-dev
}

# Debian's Chromium, Node.js and the interop/bench npm packages (playwright-core drives the
# system Chromium; it never downloads a browser).
browser_need() {
  # fonts-nanum: Korean text renders in Chromium (the Korean screens and their screenshots).
  apt_need chromium iproute2 util-linux fonts-nanum
  node_need
  (cd "$ROOT/interop" && npm ci --no-audit --no-fund --loglevel=error)
}

# What the desktop app builds against (Tauri 2 on WebKitGTK 4.1), and Node for its UI.
app_need() {
  apt_need libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev \
    librsvg2-dev libayatana-appindicator3-dev libxdo-dev fonts-nanum
  node_need
  # `npm ci` needs every platform's optional Tauri CLI binary in the lock file; a registry
  # mirror without the macOS and Windows ones (like this network's) cannot write them, so fall
  # back to `npm install`, which still installs the locked versions.
  # Skipped when ui/node_modules already matches the lock file (npm writes its own copy there).
  if [ "$ROOT/ui/node_modules/.package-lock.json" -nt "$ROOT/ui/package-lock.json" ]; then
    return
  fi
  (cd "$ROOT/ui" && { npm ci --no-audit --no-fund --loglevel=silent 2>/dev/null \
    || npm install --no-audit --no-fund --loglevel=error; })
}

# Node.js 20 or newer and npm (the UI's build and tests, playwright-core).
node_need() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_need nodejs npm
  fi
  # Vite 8 needs 20.19 or newer within Node 20.
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    say "The UI tools need Node.js 20.19 or newer; this machine has $(node --version)."
    say "Install Node.js 20.19+ (e.g. Debian's bookworm-backports or NodeSource), then run this again."
    exit 1
  fi
}

# The app's end-to-end test: a virtual display, WebKitGTK's WebDriver and tauri-driver.
app_test_need() {
  apt_need xvfb xauth webkit2gtk-driver procps python3
  if ! command -v tauri-driver >/dev/null 2>&1; then
    say "installing tauri-driver (cargo install, about a minute)"
    cargo install tauri-driver --locked --version 2.1.0
  fi
}

# Builds the page the app embeds (ui/dist); the app's Rust build needs it first.
ui_build() {
  (cd "$ROOT/ui" && npx --no-install tsc --noEmit && npx --no-install vite build --logLevel warn)
}
