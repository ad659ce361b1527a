// HMAC (RFC 2104) over SHA-256, SHA-384 and SHA-512, for JWT HS256/HS384/HS512.

import { Sha256 } from "./sha256";
import { Sha512 } from "./sha512";

export enum HashAlg {
  Sha256 = 0,
  Sha384 = 1,
  Sha512 = 2,
}

function blockSize(alg: HashAlg): i32 {
  return alg == HashAlg.Sha256 ? 64 : 128;
}

function hash(alg: HashAlg, a: Uint8Array, b: Uint8Array): Uint8Array {
  if (alg == HashAlg.Sha256) return new Sha256().update(a).update(b).digest();
  return new Sha512(alg == HashAlg.Sha384 ? 48 : 64).update(a).update(b).digest();
}

/** A key prepared once (padded, xored) and reused for every message. */
export class HmacKey {
  private inner: Uint8Array;
  private outer: Uint8Array;

  constructor(public readonly alg: HashAlg, key: Uint8Array) {
    const bs = blockSize(alg);
    let k = key;
    if (k.length > bs) k = hash(alg, k, new Uint8Array(0));
    this.inner = new Uint8Array(bs);
    this.outer = new Uint8Array(bs);
    for (let i = 0; i < bs; i++) {
      const b: u8 = i < k.length ? k[i] : 0;
      this.inner[i] = b ^ 0x36;
      this.outer[i] = b ^ 0x5c;
    }
  }

  sign(message: Uint8Array): Uint8Array {
    return hash(this.alg, this.outer, hash(this.alg, this.inner, message));
  }
}

export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  return new HmacKey(HashAlg.Sha256, key).sign(message);
}

export function hmacSha384(key: Uint8Array, message: Uint8Array): Uint8Array {
  return new HmacKey(HashAlg.Sha384, key).sign(message);
}

export function hmacSha512(key: Uint8Array, message: Uint8Array): Uint8Array {
  return new HmacKey(HashAlg.Sha512, key).sign(message);
}
