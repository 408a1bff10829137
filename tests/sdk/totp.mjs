// RFC 6238 TOTP (HMAC-SHA1, 30 s steps, 6 digits) over an RFC 4648 base32 secret, with Node's crypto.
// What an authenticator app shows for the secret tether's TOTP module checks.
import { createHmac } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 to bytes; case, spaces and `=` padding ignored. */
export function decodeBase32(text) {
  const clean = text.toUpperCase().replace(/[\s=]/g, '');
  const bytes = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const digit = ALPHABET.indexOf(ch);
    if (digit < 0) throw new Error(`not base32: ${JSON.stringify(ch)} in the TOTP secret`);
    value = (value << 5) | digit;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

/** The code for `secret` (base32) at unix time `seconds`. */
export function totp(secret, seconds = Date.now() / 1000, digits = 6, step = 30) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / step)));
  const mac = createHmac('sha1', decodeBase32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

// RFC 6238 appendix B, SHA-1 at T = 59 s (94287082, of which a 6-digit code keeps the last six): a broken
// implementation fails here, not later as a confusing "Authentication Failed".
if (totp('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', 59, 8) !== '94287082') {
  throw new Error('the TOTP implementation fails the RFC 6238 test vector');
}
