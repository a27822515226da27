#!/usr/bin/env bash
# Regenerates the default English voice prompts of the SIP gateway (sip/prompts/*.wav) with
# espeak-ng and sox (Debian packages `espeak-ng` and `sox`). The files are committed; run this
# only to change a text or add a prompt, and keep sip/src/prompt.rs's list in step.
# Format: WAV, 8000 Hz, mono, 16-bit signed PCM (what G.711 carries; the gateway refuses others).
set -euo pipefail
cd "$(dirname "$0")/../sip/prompts"
command -v espeak-ng >/dev/null && command -v sox >/dev/null ||
  { echo "needs espeak-ng and sox: apt-get install espeak-ng sox" >&2; exit 1; }

# name|text
prompts=(
  "welcome|Welcome to Conclave. Please enter the meeting ID, followed by the pound key."
  "enter-id|Please enter the meeting ID, followed by the pound key."
  "incorrect-id|That meeting ID or password is not correct."
  "try-again|Please try again later."
  "bye|Goodbye."
  "correct-id|Thank you."
  "enter-password|Please enter the meeting password, followed by the pound key."
  "not-active|This meeting has not started yet."
  "conference-full|This meeting is full."
  "error|Sorry, something went wrong."
  "participants-0|You are the first participant."
  "participants-1|There is one other participant."
  "participants-2|There are two other participants."
  "participants-3|There are three other participants."
  "participants-4|There are four other participants."
  "participants-5|There are five other participants."
  "participants-more|There are more than five other participants."
  "started|You have started the meeting."
  "new-participant|"
  "muted|You are muted."
  "unmuted|You are unmuted."
  "recording|This meeting is being recorded."
)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for entry in "${prompts[@]}"; do
  name="${entry%%|*}"
  text="${entry#*|}"
  if [ -z "$text" ]; then
    # A short two-note chime instead of words.
    sox -n -r 8000 -c 1 -b 16 -e signed-integer "$name.wav" \
      synth 0.12 sine 880 synth 0.12 sine 1320 vol 0.3 : synth 0.12 sine 1320 vol 0.3
    continue
  fi
  espeak-ng -v en-us -s 165 -w "$tmp/$name.wav" "$text"
  # 8 kHz mono 16-bit; trim leading/trailing silence, then 100 ms of silence at the end.
  sox "$tmp/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$name.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0 0.1
done
du -ch ./*.wav | tail -n 1
