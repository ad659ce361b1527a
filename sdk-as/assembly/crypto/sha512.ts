// SHA-512 and SHA-384 (FIPS 180-4). Constants generated from the first primes' roots.

const K: StaticArray<u64> = [
  0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
  0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
  0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
  0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
  0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
  0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
  0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
  0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
  0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
  0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
  0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
  0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
  0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
  0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
  0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
  0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
  0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
  0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
  0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
  0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817
];

const IV512: StaticArray<u64> = [
  0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
  0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179
];

const IV384: StaticArray<u64> = [
  0xcbbb9d5dc1059ed8, 0x629a292a367cd507, 0x9159015a3070dd17, 0x152fecd8f70e5939,
  0x67332667ffc00b31, 0x8eb44a8768581511, 0xdb0c2e0d64f98fa7, 0x47b5481dbefa4fa4
];

/** Incremental SHA-512 (or SHA-384 with outputBytes = 48). */
export class Sha512 {
  private h: StaticArray<u64> = new StaticArray<u64>(8);
  private w: StaticArray<u64> = new StaticArray<u64>(80);
  private block: Uint8Array = new Uint8Array(128);
  private blockLen: i32 = 0;
  private total: u64 = 0;

  constructor(public readonly outputBytes: i32 = 64) {
    this.reset();
  }

  reset(): void {
    const iv = this.outputBytes == 48 ? IV384 : IV512;
    for (let i = 0; i < 8; i++) unchecked(this.h[i] = iv[i]);
    this.blockLen = 0;
    this.total = 0;
  }

  update(data: Uint8Array): Sha512 {
    const n = data.length;
    this.total += <u64>n;
    let i = 0;
    while (i < n) {
      const take = min(128 - this.blockLen, n - i);
      for (let j = 0; j < take; j++) unchecked(this.block[this.blockLen + j] = data[i + j]);
      this.blockLen += take;
      i += take;
      if (this.blockLen == 128) {
        this.compress();
        this.blockLen = 0;
      }
    }
    return this;
  }

  digest(): Uint8Array {
    const bits = this.total * 8;
    // 0x80, zeros, then a 128-bit length (the high 64 bits are zero for our sizes)
    const pad = new Uint8Array(((this.blockLen < 112) ? 112 : 240) - this.blockLen + 16);
    pad[0] = 0x80;
    for (let i = 0; i < 8; i++) pad[pad.length - 1 - i] = <u8>(bits >> (8 * <u64>i));
    this.update(pad);
    const out = new Uint8Array(this.outputBytes);
    for (let i = 0; i < this.outputBytes; i++) {
      out[i] = <u8>(unchecked(this.h[i >> 3]) >> (8 * <u64>(7 - (i & 7))));
    }
    return out;
  }

  private compress(): void {
    const w = this.w;
    const b = this.block;
    for (let t = 0; t < 16; t++) {
      let v: u64 = 0;
      for (let j = 0; j < 8; j++) v = (v << 8) | <u64>unchecked(b[8 * t + j]);
      unchecked(w[t] = v);
    }
    for (let t = 16; t < 80; t++) {
      const w15 = unchecked(w[t - 15]);
      const w2 = unchecked(w[t - 2]);
      const s0 = rotr<u64>(w15, 1) ^ rotr<u64>(w15, 8) ^ (w15 >> 7);
      const s1 = rotr<u64>(w2, 19) ^ rotr<u64>(w2, 61) ^ (w2 >> 6);
      unchecked(w[t] = unchecked(w[t - 16]) + s0 + unchecked(w[t - 7]) + s1);
    }
    const h = this.h;
    let a = unchecked(h[0]), bb = unchecked(h[1]), c = unchecked(h[2]), d = unchecked(h[3]);
    let e = unchecked(h[4]), f = unchecked(h[5]), g = unchecked(h[6]), hh = unchecked(h[7]);
    for (let t = 0; t < 80; t++) {
      const S1 = rotr<u64>(e, 14) ^ rotr<u64>(e, 18) ^ rotr<u64>(e, 41);
      const ch = (e & f) ^ (~e & g);
      const t1 = hh + S1 + ch + unchecked(K[t]) + unchecked(w[t]);
      const S0 = rotr<u64>(a, 28) ^ rotr<u64>(a, 34) ^ rotr<u64>(a, 39);
      const maj = (a & bb) ^ (a & c) ^ (bb & c);
      const t2 = S0 + maj;
      hh = g; g = f; f = e; e = d + t1;
      d = c; c = bb; bb = a; a = t1 + t2;
    }
    unchecked(h[0] += a); unchecked(h[1] += bb); unchecked(h[2] += c); unchecked(h[3] += d);
    unchecked(h[4] += e); unchecked(h[5] += f); unchecked(h[6] += g); unchecked(h[7] += hh);
  }
}

export function sha512(data: Uint8Array): Uint8Array {
  return new Sha512(64).update(data).digest();
}

export function sha384(data: Uint8Array): Uint8Array {
  return new Sha512(48).update(data).digest();
}
