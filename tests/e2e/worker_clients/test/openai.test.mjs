// The official `openai` client library, unmodified, against the worker's
// OpenAI-compatible endpoints: /v1/models, /v1/chat/completions and
// /v1/completions, streaming (SSE) and not, usage counts, and errors in
// OpenAI's shape mapped to the library's typed errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

import { WORKER_MODEL, WORKER_URL, inFlight, waitFor } from '../lib/env.mjs';

const client = new OpenAI({ baseURL: `${WORKER_URL}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say hello.' },
];

function checkUsage(usage) {
  assert.ok(usage, 'usage is present');
  assert.ok(Number.isInteger(usage.prompt_tokens) && usage.prompt_tokens > 0, JSON.stringify(usage));
  assert.ok(Number.isInteger(usage.completion_tokens) && usage.completion_tokens >= 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

test('models.list and models.retrieve', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(WORKER_MODEL), `models: ${ids}`);
  const m = await client.models.retrieve(WORKER_MODEL);
  assert.equal(m.id, WORKER_MODEL);
  assert.equal(m.object, 'model');
});

test('chat.completions.create, not streaming', async () => {
  const r = await client.chat.completions.create({ model: WORKER_MODEL, messages, max_tokens: 8, seed: 1 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, WORKER_MODEL);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  checkUsage(r.usage);
  assert.ok(r.usage.completion_tokens <= 8);
});

test('chat.completions.create, streaming with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: WORKER_MODEL,
    messages,
    max_tokens: 8,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let role;
  let finish;
  let usage;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      role ??= c.delta.role;
      text += c.delta.content ?? '';
      finish ??= c.finish_reason ?? undefined;
    }
  }
  assert.ok(chunks >= 2, `only ${chunks} chunks`);
  assert.equal(role, 'assistant');
  assert.ok(['stop', 'length'].includes(finish), `finish_reason ${finish}`);
  checkUsage(usage);
  if (usage.completion_tokens > 0) assert.ok(text.length > 0, 'tokens were counted but no text came');
});

test('chat.completions.stream helper accumulates the same message', async () => {
  const stream = client.chat.completions.stream({ model: WORKER_MODEL, messages, max_tokens: 8, seed: 7 });
  let deltas = '';
  stream.on('content', (delta) => {
    deltas += delta;
  });
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].message.role, 'assistant');
  assert.equal(final.choices[0].message.content, deltas);
});

test('max_tokens ends the generation with finish_reason length', async () => {
  const r = await client.chat.completions.create({ model: WORKER_MODEL, messages, max_tokens: 2 });
  assert.ok(r.usage.completion_tokens <= 2);
  if (r.usage.completion_tokens === 2) assert.equal(r.choices[0].finish_reason, 'length');
});

test('completions.create, streaming and not', async () => {
  const r = await client.completions.create({ model: WORKER_MODEL, prompt: 'Once upon a time', max_tokens: 6 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  checkUsage(r.usage);

  const stream = await client.completions.create({
    model: WORKER_MODEL,
    prompt: 'Once upon a time',
    max_tokens: 6,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage;
  let finish;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      finish ??= c.finish_reason ?? undefined;
    }
  }
  assert.ok(['stop', 'length'].includes(finish));
  checkUsage(usage);
  assert.equal(typeof text, 'string');
});

test('an unknown model is a NotFoundError in OpenAI shape', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages }),
    (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `${err}`);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'model_not_found');
      assert.equal(err.param, 'model');
      return true;
    },
  );
});

test('a bad field is a BadRequestError naming it', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: WORKER_MODEL, messages, temperature: 7 }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, 'temperature');
      return true;
    },
  );
});

test('aborting a stream cancels it on the worker', async () => {
  const stream = await client.chat.completions.create({
    model: WORKER_MODEL,
    messages,
    max_tokens: 4000,
    stream: true,
  });
  let n = 0;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content) n++;
    if (n >= 2) {
      stream.controller.abort();
      break;
    }
  }
  await waitFor(async () => (await inFlight()) === 0, 10000, 'the aborted request to leave the worker');
});
