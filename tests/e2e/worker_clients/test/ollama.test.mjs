// The official `ollama` client library, unmodified, against the worker's
// Ollama-compatible endpoints: /api/chat and /api/generate (NDJSON streaming
// and not, the final object's counts and durations), /api/tags, /api/ps,
// /api/show, /api/version, and errors as {"error": "..."}.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Ollama } from 'ollama';

import { WORKER_MODEL, WORKER_URL, inFlight, waitFor } from '../lib/env.mjs';

const ollama = new Ollama({ host: WORKER_URL });
const messages = [{ role: 'user', content: 'Why is the sky blue?' }];

function checkFinal(r) {
  assert.equal(r.done, true);
  assert.ok(['stop', 'length'].includes(r.done_reason), `done_reason ${r.done_reason}`);
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration']) {
    assert.ok(Number.isInteger(r[k]) && r[k] >= 0, `${k}=${r[k]}`);
  }
  assert.ok(Number.isInteger(r.prompt_eval_count) && r.prompt_eval_count > 0);
  assert.ok(Number.isInteger(r.eval_count) && r.eval_count >= 0);
  assert.ok(r.total_duration >= r.eval_duration);
}

test('list, ps, show, version', async () => {
  const tags = await ollama.list();
  const names = tags.models.map((m) => m.name);
  assert.ok(names.includes(WORKER_MODEL), `tags: ${names}`);
  const tag = tags.models.find((m) => m.name === WORKER_MODEL);
  assert.match(tag.digest, /^[0-9a-f]{64}$/);
  assert.equal(typeof tag.details.format, 'string');

  const ps = await ollama.ps();
  assert.ok(ps.models.some((m) => m.name === WORKER_MODEL), JSON.stringify(ps));

  const show = await ollama.show({ model: WORKER_MODEL });
  assert.equal(typeof show.modelfile, 'string');
  assert.equal(typeof show.details, 'object');
  assert.ok(Array.isArray(show.capabilities) && show.capabilities.includes('completion'));

  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+/);
});

test('chat, not streaming', async () => {
  const r = await ollama.chat({ model: WORKER_MODEL, messages, stream: false, options: { num_predict: 8, seed: 3 } });
  assert.equal(r.model, WORKER_MODEL);
  assert.equal(r.message.role, 'assistant');
  assert.equal(typeof r.message.content, 'string');
  checkFinal(r);
  assert.ok(r.eval_count <= 8);
});

test('chat, streaming', async () => {
  const stream = await ollama.chat({ model: WORKER_MODEL, messages, stream: true, options: { num_predict: 8 } });
  let text = '';
  let last;
  let parts = 0;
  for await (const part of stream) {
    parts++;
    text += part.message.content;
    last = part;
    if (!part.done) assert.equal(part.message.role, 'assistant');
  }
  assert.ok(parts >= 2, `only ${parts} parts`);
  checkFinal(last);
  if (last.eval_count > 0) assert.ok(text.length > 0);
});

test('generate, streaming and not', async () => {
  const r = await ollama.generate({ model: WORKER_MODEL, prompt: 'Once upon a time', stream: false, options: { num_predict: 6 } });
  assert.equal(typeof r.response, 'string');
  checkFinal(r);

  const stream = await ollama.generate({ model: WORKER_MODEL, prompt: 'Once upon a time', options: { num_predict: 6 } , stream: true });
  let text = '';
  let last;
  for await (const part of stream) {
    text += part.response;
    last = part;
  }
  checkFinal(last);
  assert.ok(last.eval_count <= 6);
  assert.equal(typeof text, 'string');
});

test('num_predict caps the output with done_reason length', async () => {
  const r = await ollama.generate({ model: WORKER_MODEL, prompt: 'Count:', stream: false, options: { num_predict: 2 } });
  assert.ok(r.eval_count <= 2);
  if (r.eval_count === 2) assert.equal(r.done_reason, 'length');
});

test('an unknown model is a 404 ResponseError', async () => {
  await assert.rejects(ollama.chat({ model: 'no-such-model', messages, stream: false }), (err) => {
    assert.equal(err.name, 'ResponseError');
    assert.equal(err.status_code, 404);
    assert.match(err.error, /not found/);
    return true;
  });
  await assert.rejects(ollama.show({ model: 'no-such-model' }), (err) => err.status_code === 404);
});

test('abort() cancels a stream on the worker', async () => {
  const client = new Ollama({ host: WORKER_URL });
  const stream = await client.generate({ model: WORKER_MODEL, prompt: 'Tell a long story', stream: true, options: { num_predict: 4000 } });
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const part of stream) {
        if (part.response) n++;
        if (n >= 2) client.abort();
      }
    })(),
    (err) => err.name === 'AbortError',
  );
  await waitFor(async () => (await inFlight()) === 0, 10000, 'the aborted request to leave the worker');
});
