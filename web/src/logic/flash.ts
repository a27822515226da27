// A confirmation that outlives one navigation ("Conference scheduled." shown on the page the
// form leads to). Taken once: a reload does not show it again.
let pending: string | undefined;

/** Keeps `text` for the next page that takes it. */
export function flash(text: string): void {
  pending = text;
}

/** The kept text (and forgets it). */
export function takeFlash(): string | undefined {
  const text = pending;
  pending = undefined;
  return text;
}
