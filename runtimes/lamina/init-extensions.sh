#!/bin/bash
# Lamina's Init for environments with external extensions (Lambda's order: extensions, then the runtime).
# Starts every executable in /opt/extensions in parallel, waits until each has registered with the Extensions API,
# then becomes the runtime ("$@"). Uses bash's /dev/tcp so no extra process is started for the wait.
count=0
for extension in /opt/extensions/*; do
  [ -f "$extension" ] && [ -x "$extension" ] || continue
  # Extensions see the function's variables except the runtime-specific ones (as on Lambda).
  (
    unset AWS_EXECUTION_ENV AWS_LAMBDA_LOG_GROUP_NAME AWS_LAMBDA_LOG_STREAM_NAME AWS_XRAY_CONTEXT_MISSING \
      AWS_XRAY_DAEMON_ADDRESS LAMBDA_RUNTIME_DIR LAMBDA_TASK_ROOT _AWS_XRAY_DAEMON_ADDRESS _AWS_XRAY_DAEMON_PORT _HANDLER
    # Their output goes to a pipe of its own, so Lamina can tell extension lines from the function's.
    if [ -n "${LAMINA_EXTENSION_LOG_FD:-}" ]; then
      fd=$LAMINA_EXTENSION_LOG_FD
      unset LAMINA_EXTENSION_LOG_FD
      exec "$extension" >&"$fd" 2>&1 {fd}>&-
    fi
    exec "$extension"
  ) &
  count=$((count + 1))
done

if [ "$count" -gt 0 ]; then
  exec 3<>"/dev/tcp/${AWS_LAMBDA_RUNTIME_API%:*}/${AWS_LAMBDA_RUNTIME_API##*:}" || exit 70
  printf 'GET /2020-01-01/lamina/extensions-registered?count=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' \
    "$count" "$AWS_LAMBDA_RUNTIME_API" >&3
  read -r _ status _ <&3 || exit 70
  exec 3<&- 3>&-
  [ "$status" = "200" ] || exit 70
fi

# The runtime neither inherits the extensions' pipe nor learns of it.
if [ -n "${LAMINA_EXTENSION_LOG_FD:-}" ]; then
  eval "exec ${LAMINA_EXTENSION_LOG_FD}>&-"
  unset LAMINA_EXTENSION_LOG_FD
fi

# The runtime runs as this script's child rather than replacing it: when it ends (a crash, or Lamina killing it after
# a timeout) the sandbox lives on, so the extensions get their SHUTDOWN event (reason "failure" or "timeout"), as on
# Lambda. Lamina learns of the exit from here, then stops the sandbox once the extensions are done.
"$@" <&0 &
runtime=$!
wait "$runtime"
status=$?
if exec 3<>"/dev/tcp/${AWS_LAMBDA_RUNTIME_API%:*}/${AWS_LAMBDA_RUNTIME_API##*:}"; then
  printf 'POST /2020-01-01/lamina/runtime-exited?status=%d HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' \
    "$status" "$AWS_LAMBDA_RUNTIME_API" >&3
  read -r _ _ _ <&3
  exec 3<&- 3>&-
fi
wait
exit "$status"
