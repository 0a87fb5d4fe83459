#!/usr/bin/env bash
# A sagaline task worker in bash + curl: claims one task of a queue, charges the order in
# its input, and completes the task with the payment (or fails it). Python is used only to
# read and write JSON (no jq needed).
#
#   SAGALINE_URL=http://127.0.0.1:8080 SAGALINE_TOKEN=sgl_... ./curl.sh payments
#
# The protocol, in full:
#   POST /api/v1/tasks/claim          {queue, worker, max, wait_seconds} -> {tasks: [...]}
#   POST /api/v1/tasks/ID/heartbeat   {token}                    -> {deadline, cancel_requested}
#   POST /api/v1/tasks/ID/complete    {token, result}
#   POST /api/v1/tasks/ID/fail        {token, error: {type, message}, non_retryable}
# 409 means the lease was lost (the task went to another worker): drop the task.
set -euo pipefail

url="${SAGALINE_URL:-http://127.0.0.1:8080}"
token="${SAGALINE_TOKEN:?set SAGALINE_TOKEN to a token made with --role worker}"
queue="${1:-payments}"
wait="${WAIT_SECONDS:-20}"

post() {  # post PATH BODY: prints the response body, then the status on the last line
    curl -sS -X POST "$url/api/v1/tasks/$1" \
        -H "authorization: Bearer $token" -H "content-type: application/json" \
        --data-binary "$2" -w '\n%{http_code}'
}

json() {  # json EXPRESSION < document: evaluates EXPRESSION with the document as `d`
    python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

claimed="$(post claim "{\"queue\": \"$queue\", \"worker\": \"curl-$$\", \"max\": 1, \"wait_seconds\": $wait}")"
status="${claimed##*$'\n'}"
body="${claimed%$'\n'*}"
if [ "$status" != 200 ]; then
    echo "claim failed ($status): $body" >&2
    exit 1
fi
if [ "$(json 'len(d["tasks"])' <<<"$body")" = 0 ]; then
    echo "no task in queue $queue"
    exit 0
fi
task="$(json 'json.dumps(d["tasks"][0])' <<<"$body")"
id="$(json 'd["id"]' <<<"$task")"
lease="$(json 'd["token"]' <<<"$task")"
echo "claimed task $id: step $(json 'd["step"]' <<<"$task"), attempt $(json 'd["attempt"]' <<<"$task")"

# The work: a payment for the order in the step's input.
order_id="$(json 'd["input"]["order"]["id"]' <<<"$task")"
amount="$(json 'd["input"]["order"]["amount"]' <<<"$task")"
post "$id/heartbeat" "{\"token\": \"$lease\"}" >/dev/null

if [ "${DECLINE:-}" = 1 ]; then
    answer="$(post "$id/fail" "{\"token\": \"$lease\", \"error\": {\"type\": \"CardDeclined\", \"message\": \"declined by curl.sh\"}, \"non_retryable\": true}")"
else
    answer="$(post "$id/complete" "{\"token\": \"$lease\", \"result\": {\"id\": \"curl-$order_id\", \"amount\": $amount}}")"
fi
status="${answer##*$'\n'}"
case "$status" in
    200) echo "answered task $id: ${answer%$'\n'*}" ;;
    409) echo "task $id: lease lost, another worker has it" >&2; exit 2 ;;
    *) echo "answer refused ($status): ${answer%$'\n'*}" >&2; exit 1 ;;
esac
