// Median argon2id hash and verify time at the parameters passwords use (src/accounts/password.ts).
// Run: npx tsx bench/argon2.ts [rounds=40]
import argon2 from 'argon2';
import { ARGON2_OPTIONS } from '../src/accounts/password';

const rounds = Number(process.argv[2] ?? 40);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const time = async (fn: () => Promise<unknown>) => {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
};

await argon2.hash('warm-up', ARGON2_OPTIONS);
const hashMs: number[] = [];
const verifyMs: number[] = [];
for (let i = 0; i < rounds; i++) {
  const password = `Violet-Harbor-Quartz-${i}`;
  let hash = '';
  hashMs.push(await time(async () => (hash = await argon2.hash(password, ARGON2_OPTIONS))));
  verifyMs.push(await time(() => argon2.verify(hash, password)));
}
const { memoryCost, timeCost, parallelism } = ARGON2_OPTIONS;
console.log(`argon2id m=${memoryCost} KiB, t=${timeCost}, p=${parallelism}; ${rounds} rounds, sequential`);
console.log(`hash   median ${median(hashMs).toFixed(1)} ms (min ${Math.min(...hashMs).toFixed(1)}, max ${Math.max(...hashMs).toFixed(1)})`);
console.log(`verify median ${median(verifyMs).toFixed(1)} ms (min ${Math.min(...verifyMs).toFixed(1)}, max ${Math.max(...verifyMs).toFixed(1)})`);
