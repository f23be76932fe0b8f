/**
 * Request ids as ULIDs, the same shape the server generates.
 *
 * The protocol lets the client choose request ids and recommends ULIDs: unique without
 * coordination, and ordered by creation time when compared as strings. Within one
 * millisecond the random part counts up, so ids made in a burst still sort in the order
 * they were made.
 */

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_CHARS = 10;
const RANDOM_CHARS = 16;

let lastTime = -1;
const lastRandom: number[] = new Array<number>(RANDOM_CHARS).fill(0);

function fillRandom(digits: number[]): void {
  const bytes = new Uint8Array(RANDOM_CHARS);
  const source = globalThis.crypto;
  if (source !== undefined && typeof source.getRandomValues === "function") {
    source.getRandomValues(bytes);
  } else {
    // Ids need to be unique, not secret: a weaker source only raises the odds of a clash.
    for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  }
  for (let i = 0; i < RANDOM_CHARS; i += 1) digits[i] = (bytes[i] as number) & 31;
}

/** Add one to the random part; false when it overflowed (2^80 ids in one millisecond). */
function increment(digits: number[]): boolean {
  for (let i = RANDOM_CHARS - 1; i >= 0; i -= 1) {
    const digit = (digits[i] as number) + 1;
    if (digit < 32) {
      digits[i] = digit;
      return true;
    }
    digits[i] = 0;
  }
  return false;
}

/** A new ULID: 26 characters of Crockford base32, the first 10 holding the time in ms. */
export function newRequestId(): string {
  let now = Date.now();
  if (now <= lastTime) {
    now = lastTime;
    if (!increment(lastRandom)) {
      now = lastTime + 1;
      fillRandom(lastRandom);
    }
  } else {
    fillRandom(lastRandom);
  }
  lastTime = now;
  let time = "";
  let rest = now;
  for (let i = 0; i < TIME_CHARS; i += 1) {
    time = ALPHABET.charAt(rest % 32) + time;
    rest = Math.floor(rest / 32);
  }
  return time + lastRandom.map((digit) => ALPHABET.charAt(digit)).join("");
}
