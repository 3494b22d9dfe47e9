# Sourced by bin/test: axe-core (accessibility checks in the browser tests) from the npm
# registry into tests/.node (git-ignored), once; the tests never download anything.
# Without npm the accessibility tests skip and say why.
AXE_CORE="axe-core@4"
if [ ! -f tests/.node/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null 2>&1; then
  echo "Installing $AXE_CORE into tests/.node ..."
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix tests/.node "$AXE_CORE" >/dev/null \
    || echo "Could not install $AXE_CORE with npm: the accessibility tests will fail." >&2
fi
