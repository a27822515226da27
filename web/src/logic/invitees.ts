// E-mail addresses typed into a box: one per line or separated by commas (or semicolons, as
// mail programs paste them). Only plain `name@example.org` is accepted — the API refuses
// display names and anything else — and each refusal names the address.

/** A plain address: no display name, no spaces, one @, a domain of letters, digits and hyphens. */
const ADDRESS = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Whether `value` is a plain e-mail address the API takes. */
export function isEmail(value: string): boolean {
  const v = value.trim();
  if (!v || v.length > 254 || !ADDRESS.test(v)) return false;
  const local = v.slice(0, v.lastIndexOf('@'));
  return local.length <= 64 && !local.startsWith('.') && !local.endsWith('.') && !local.includes('..');
}

export interface Invitees {
  /** The addresses, each once (compared without case), in the order given. */
  addresses: string[];
  /** What is not an address, as typed. */
  invalid: string[];
}

/** Splits and checks the invitee box. */
export function parseInvitees(text: string): Invitees {
  const addresses: string[] = [];
  const invalid: string[] = [];
  for (const piece of text.split(/[\n,;]+/)) {
    const value = piece.trim();
    if (!value) continue;
    if (!isEmail(value)) {
      if (!invalid.includes(value)) invalid.push(value);
    } else if (!addresses.some((a) => a.toLowerCase() === value.toLowerCase())) addresses.push(value);
  }
  return { addresses, invalid };
}

/** The error for the invitee box, naming the bad addresses; undefined when all are fine. */
export function inviteesError(parsed: Invitees, max = 200): string | undefined {
  if (parsed.invalid.length === 1) return `“${parsed.invalid[0]}” is not an e-mail address like name@example.org.`;
  if (parsed.invalid.length > 1) {
    return `These are not e-mail addresses like name@example.org: ${parsed.invalid.map((v) => `“${v}”`).join(', ')}.`;
  }
  if (parsed.addresses.length > max) return `Invite at most ${max} addresses at once.`;
  return undefined;
}

/** The box's text for a list of addresses (one per line). */
export function formatInvitees(addresses: readonly string[]): string {
  return addresses.join('\n');
}
