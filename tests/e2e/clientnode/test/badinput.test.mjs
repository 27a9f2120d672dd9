// Bad input against a real `corral server`: malformed YAML/JSON, wrong apiVersion/kind,
// unknown fields (Strict), invalid values, bodies over the size limit, unsupported
// media types, YAML alias and depth bombs. Each gets the right 4xx as a Kubernetes
// Status whose message names the problem, and leaves the store unchanged (every
// object's resourceVersion in the test namespace and the cluster-scoped Nodes compared
// before and after). The server stays up throughout.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CorralServer, G, describe, model, modelDeployment } from '../lib/harness.mjs';

const NS = 'bad';
const MODELS = `${G}/namespaces/${NS}/models`;
const MDS = `${G}/namespaces/${NS}/modeldeployments`;
let srv;

before(async () => {
  srv = await CorralServer.start('badinput');
  for (const [p, body] of [
    [MODELS, model('good', NS)],
    [MDS, modelDeployment('gooddep', NS, 1)],
  ]) {
    const r = await srv.request('POST', p, { body });
    assert.equal(r.status, 201, `setup: ${describe('POST', p, r)}`);
  }
});

after(async () => {
  if (srv) await srv.cleanup();
});

// name -> resourceVersion of everything the bad requests could touch.
async function snapshot() {
  const out = {};
  for (const p of [MODELS, MDS, `${G}/namespaces/${NS}/replicas`, `${G}/nodes`, `/api/v1/namespaces/${NS}/events`]) {
    const r = await srv.request('GET', p);
    assert.equal(r.status, 200, `snapshot: ${describe('GET', p, r)}`);
    for (const i of r.json.items) out[`${p}/${i.metadata.name}`] = i.metadata.resourceVersion;
  }
  return out;
}

// Sends one bad request and checks: status in `codes`, a Status body with that code,
// the message matching `message`, optional causes[].field, the store unchanged and
// the server still ready.
async function expectRejected(what, method, p, opts, { codes, reason, message, field }) {
  const before = await snapshot();
  const started = Date.now();
  const res = await srv.request(method, p, opts);
  const took = Date.now() - started;
  const where = `${what}: ${describe(method, p, res)}`;
  assert.ok(codes.includes(res.status), `${where}\nwant HTTP ${codes.join(' or ')}`);
  assert.equal(res.json?.kind, 'Status', `${where}\nwant a Status body`);
  assert.equal(res.json.code, res.status, `${where}\nStatus.code must equal the HTTP status`);
  assert.equal(res.json.status, 'Failure', where);
  if (reason) assert.equal(res.json.reason, reason, `${where}\nwant reason ${reason}`);
  if (message) assert.match(res.json.message || '', message, `${where}\nthe message must name the problem`);
  if (field) {
    const fields = (res.json.details?.causes || []).map((c) => c.field);
    const ok = field instanceof RegExp ? fields.some((f) => field.test(f)) : fields.includes(field);
    assert.ok(ok, `${where}\nwant details.causes[].field ${field}, got ${JSON.stringify(fields)}`);
  }
  assert.ok(took < 10000, `${what}: took ${took} ms`);
  assert.deepEqual(await snapshot(), before, `${what}: the store changed`);
  const ready = await srv.request('GET', '/readyz');
  assert.equal(ready.status, 200, `${what}: server not ready afterwards: ${describe('GET', '/readyz', ready)}`);
  return res;
}

// Each bad request is its own subtest, so one wrong answer does not hide the next.
function rejects(t, what, method, p, opts, want) {
  return t.test(what, () => expectRejected(what, method, p, opts, want));
}

const where = /line|column|offset|position|byte|char/i;

test('malformed JSON -> 400 saying where', async (t) => {
  const body = '{"apiVersion":"corral.dev/v1alpha1","kind":"Model","metadata":{"name":"x"},"spec":{"engine":"sim",';
  await rejects(t, 'truncated JSON', 'POST', MODELS, { body }, { codes: [400], reason: 'BadRequest', message: where });
  await rejects(t, 'JSON with a stray token', 'POST', MODELS, { body: '{"kind": Model}' }, { codes: [400], reason: 'BadRequest', message: where });
  await rejects(t, 'not an object', 'POST', MODELS, { body: '[1,2,3]' }, { codes: [400], reason: 'BadRequest' });
  await rejects(t, 'empty body', 'POST', MODELS, { body: '' }, { codes: [400], reason: 'BadRequest' });
  await rejects(t,
    'malformed merge patch',
    'PATCH',
    `${MODELS}/good`,
    { body: '{"spec":', contentType: 'application/merge-patch+json' },
    { codes: [400], reason: 'BadRequest', message: where },
  );
  await rejects(t,
    'JSON Patch that is not a list',
    'PATCH',
    `${MODELS}/good`,
    { body: '{"op":"replace"}', contentType: 'application/json-patch+json' },
    { codes: [400, 422] },
  );
  await rejects(t,
    'JSON Patch with an unknown op',
    'PATCH',
    `${MODELS}/good`,
    { body: '[{"op":"frobnicate","path":"/spec/engine","value":"sim"}]', contentType: 'application/json-patch+json' },
    { codes: [400, 422], message: /frobnicate|op/ },
  );
  await rejects(t,
    'JSON Patch on a missing path',
    'PATCH',
    `${MODELS}/good`,
    { body: '[{"op":"replace","path":"/spec/nope/deeper","value":1}]', contentType: 'application/json-patch+json' },
    { codes: [400, 422], message: /nope|path/ },
  );
});

test('malformed YAML -> 400 saying where', async (t) => {
  const yaml = 'apiVersion: corral.dev/v1alpha1\nkind: Model\nmetadata:\n  name: y1\n  labels: [unclosed\nspec:\n  engine: sim\n';
  await rejects(t,
    'malformed YAML (apply)',
    'PATCH',
    `${MODELS}/y1?fieldManager=e2e`,
    { body: yaml, contentType: 'application/apply-patch+yaml' },
    { codes: [400], reason: 'BadRequest', message: /line|yaml/i },
  );
  await rejects(t,
    'malformed YAML (POST application/yaml)',
    'POST',
    MODELS,
    { body: yaml, contentType: 'application/yaml' },
    { codes: [400], reason: 'BadRequest', message: /line|yaml/i },
  );
  await rejects(t,
    'YAML tab indentation',
    'PATCH',
    `${MODELS}/y1?fieldManager=e2e`,
    { body: 'apiVersion: corral.dev/v1alpha1\nkind: Model\nmetadata:\n\tname: y1\n', contentType: 'application/apply-patch+yaml' },
    { codes: [400], reason: 'BadRequest' },
  );
});

test('wrong apiVersion, kind or namespace -> 400', async (t) => {
  await rejects(t,
    'apiVersion of another version',
    'POST',
    MODELS,
    { body: { ...model('v1', NS), apiVersion: 'corral.dev/v9' } },
    { codes: [400], reason: 'BadRequest', message: /corral\.dev\/v9|apiVersion|version/ },
  );
  await rejects(t,
    'apiVersion of another group',
    'POST',
    MODELS,
    { body: { ...model('v2', NS), apiVersion: 'apps/v1' } },
    { codes: [400], reason: 'BadRequest', message: /apps\/v1|apiVersion|group/ },
  );
  await rejects(t,
    'a Model posted to modeldeployments',
    'POST',
    MDS,
    { body: model('k1', NS) },
    { codes: [400], reason: 'BadRequest', message: /kind|Model/ },
  );
  await rejects(t,
    'an unknown kind',
    'POST',
    MODELS,
    { body: { ...model('k2', NS), kind: 'Banana' } },
    { codes: [400], reason: 'BadRequest', message: /Banana|kind/ },
  );
  await rejects(t,
    'namespace in the body differs from the URL',
    'POST',
    MODELS,
    { body: model('n1', 'elsewhere') },
    { codes: [400], reason: 'BadRequest', message: /namespace/ },
  );
  const cur = (await srv.request('GET', `${MODELS}/good`)).json;
  await rejects(t,
    'PUT whose body names another object',
    'PUT',
    `${MODELS}/good`,
    { body: { ...cur, metadata: { ...cur.metadata, name: 'other' } } },
    { codes: [400], reason: 'BadRequest', message: /name/ },
  );
});

test('unknown fields: Strict rejects, Warn warns, Ignore drops', async (t) => {
  const bogus = model('u1', NS, { spec: { bogus: 1 } });
  await rejects(t,
    'unknown field with fieldValidation=Strict',
    'POST',
    `${MODELS}?fieldValidation=Strict`,
    { body: bogus },
    { codes: [400], reason: 'BadRequest', message: /unknown field "spec\.bogus"/ },
  );
  await rejects(t,
    'duplicate field with fieldValidation=Strict',
    'POST',
    `${MODELS}?fieldValidation=Strict`,
    {
      body: '{"apiVersion":"corral.dev/v1alpha1","kind":"Model","metadata":{"name":"u2"},"spec":{"engine":"sim","engine":"sim","source":"sim://x"}}',
    },
    { codes: [400], reason: 'BadRequest', message: /duplicate field "spec\.engine"/ },
  );
  await rejects(t,
    'unknown field in a Strict merge patch',
    'PATCH',
    `${MODELS}/good?fieldValidation=Strict`,
    { body: { spec: { bogus: 1 } }, contentType: 'application/merge-patch+json' },
    { codes: [400], reason: 'BadRequest', message: /unknown field "spec\.bogus"/ },
  );
  await rejects(t,
    'unknown metadata field, Strict',
    'POST',
    `${MODELS}?fieldValidation=Strict`,
    { body: model('u3', NS, { metadata: { nmae: 'typo' } }) },
    { codes: [400], reason: 'BadRequest', message: /unknown field "metadata\.nmae"/ },
  );
  const warn = await srv.request('POST', `${MODELS}?fieldValidation=Warn`, { body: model('u4', NS, { spec: { bogus: 1 } }) });
  assert.equal(warn.status, 201, describe('POST Warn', MODELS, warn));
  assert.match(String(warn.headers.warning || ''), /^299 - "unknown field \\"spec\.bogus\\""/, `Warning header: ${warn.headers.warning}`);
  assert.equal(warn.json.spec.bogus, undefined, 'the unknown field is dropped');
  const ignore = await srv.request('POST', `${MODELS}?fieldValidation=Ignore`, { body: model('u5', NS, { spec: { bogus: 1 } }) });
  assert.equal(ignore.status, 201, describe('POST Ignore', MODELS, ignore));
  assert.equal(ignore.headers.warning, undefined, 'Ignore sends no warning');
  assert.equal(ignore.json.spec.bogus, undefined);
  await rejects(t,
    'a bad fieldValidation value',
    'POST',
    `${MODELS}?fieldValidation=Sometimes`,
    { body: model('u6', NS) },
    { codes: [400], reason: 'BadRequest', message: /fieldValidation|Sometimes/ },
  );
});

test('invalid values -> 422 Invalid naming the field', async (t) => {
  const cases = [
    ['engine not in the enum', MODELS, model('i1', NS, { spec: { engine: 'nope' } }), 'spec.engine', /nope|supported/],
    ['source not matching the pattern', MODELS, model('i2', NS, { spec: { source: 'ftp://x' } }), 'spec.source', /ftp|match|pattern/],
    ['a required field missing', MODELS, { ...model('i3', NS), spec: { engine: 'sim' } }, 'spec.source', /[Rr]equired/],
    ['a negative memory size', MODELS, model('i4', NS, { spec: { resources: { memoryBytes: -5 } } }), 'spec.resources.memoryBytes', /-5|0|minimum/],
    ['a string for an integer', MDS, modelDeployment('i5', NS, 'three'), 'spec.replicas', /integer/],
    ['negative replicas', MDS, modelDeployment('i6', NS, -1), 'spec.replicas', /-1|0|minimum/],
    ['a name that is not DNS-1123', MODELS, model('Bad_Name', NS), 'metadata.name', /Bad_Name|lowercase|RFC 1123|DNS/],
    ['a label value that is too long', MODELS, model('i7', NS, { metadata: { labels: { a: 'x'.repeat(64) } } }), /^metadata\.labels/, /63|label/],
    [
      'a policy in a list with a bad value',
      MDS,
      modelDeployment('i8', NS, 1, {
        spec: {
          autoscaling: {
            maxReplicas: 3,
            behavior: { scaleUp: { policies: [{ type: 'Pods', value: 1, periodSeconds: 10 }, { type: 'Pods', value: 0, periodSeconds: 10 }] } },
          },
        },
      }),
      'spec.autoscaling.behavior.scaleUp.policies[1].value',
      /0|minimum|greater/,
    ],
  ];
  for (const [what, p, body, field, message] of cases) {
    await rejects(t, what, 'POST', p, { body }, { codes: [422], reason: 'Invalid', message, field });
  }
  // Updates are validated too, and immutable fields stay put.
  await rejects(t,
    'a merge patch to an invalid value',
    'PATCH',
    `${MODELS}/good`,
    { body: { spec: { engine: 'nope' } }, contentType: 'application/merge-patch+json' },
    { codes: [422], reason: 'Invalid', field: 'spec.engine' },
  );
  const rep = await srv.request('POST', `${G}/namespaces/${NS}/replicas`, {
    body: { apiVersion: 'corral.dev/v1alpha1', kind: 'Replica', metadata: { name: 'rep1' }, spec: { modelRef: { name: 'good' }, nodeName: 'node-a' } },
  });
  assert.equal(rep.status, 201, describe('POST', 'replicas', rep));
  await rejects(t,
    "changing a bound replica's nodeName",
    'PATCH',
    `${G}/namespaces/${NS}/replicas/rep1`,
    { body: { spec: { nodeName: 'node-b' } }, contentType: 'application/merge-patch+json' },
    { codes: [422], reason: 'Invalid', field: 'spec.nodeName', message: /immutable/ },
  );
});

test('bodies over the limit -> 413; unsupported media types -> 415', async (t) => {
  // 4 MiB: over the 3 MiB request limit.
  const big = model('big1', NS, { metadata: { annotations: { blob: 'x'.repeat(4 << 20) } } });
  await rejects(t, 'a 4 MiB body', 'POST', MODELS, { body: big }, { codes: [413], reason: 'RequestEntityTooLarge', message: /large|limit|bytes/i });
  // Over the store's object limit (1.5 MiB) but under the request limit.
  const obj = model('big2', NS, { metadata: { annotations: { blob: 'x'.repeat(2 << 20) } } });
  await rejects(t, 'a 2 MiB object', 'POST', MODELS, { body: obj }, { codes: [413, 422], message: /large|limit|bytes|annotations/i });
  await rejects(t,
    'a 4 MiB patch',
    'PATCH',
    `${MODELS}/good`,
    { body: { metadata: { annotations: { blob: 'x'.repeat(4 << 20) } } }, contentType: 'application/merge-patch+json' },
    { codes: [413], reason: 'RequestEntityTooLarge' },
  );
  await rejects(t, 'text/plain', 'POST', MODELS, { body: 'hello', contentType: 'text/plain' }, { codes: [415], reason: 'UnsupportedMediaType', message: /text\/plain/ });
  await rejects(t,
    'application/xml patch',
    'PATCH',
    `${MODELS}/good`,
    { body: '<spec/>', contentType: 'application/xml' },
    { codes: [415], reason: 'UnsupportedMediaType', message: /application\/xml/ },
  );
  await rejects(t,
    'a plain JSON content type on PATCH',
    'PATCH',
    `${MODELS}/good`,
    { body: { spec: {} }, contentType: 'application/json' },
    { codes: [415], reason: 'UnsupportedMediaType' },
  );
});

test('YAML alias bomb and nesting bombs -> 4xx, quickly, server alive', async (t) => {
  // Billion laughs: 9 levels of 9 aliases, ~387M nodes if expanded.
  const lines = ['apiVersion: corral.dev/v1alpha1', 'kind: Model', 'metadata:', '  name: bomb', 'lol0: &a0 ["lol"]'];
  for (let i = 1; i <= 9; i++) {
    lines.push(`lol${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
  }
  lines.push('spec:', '  engine: sim', '  source: sim://x', '  sim: *a9');
  const bomb = lines.join('\n') + '\n';
  const bombResult = { codes: [400, 413, 422], message: /alias|too (many|large|deep|big)|limit|depth|expan/i };
  await rejects(t, 'billion laughs (apply)', 'PATCH', `${MODELS}/bomb?fieldManager=e2e`, { body: bomb, contentType: 'application/apply-patch+yaml' }, bombResult);
  await rejects(t, 'billion laughs (POST yaml)', 'POST', MODELS, { body: bomb, contentType: 'application/yaml' }, bombResult);

  // Deep nesting: 100,000 levels would overflow a recursive parser's stack.
  const deepJson = `{"apiVersion":"corral.dev/v1alpha1","kind":"Model","metadata":{"name":"deep"},"spec":{"engine":"sim","source":"sim://x","sim":${'['.repeat(100000)}${']'.repeat(100000)}}}`;
  await rejects(t, '100k-deep JSON', 'POST', MODELS, { body: deepJson }, { codes: [400, 413, 422], message: /depth|nest|deep/i });
  const deepYaml = `apiVersion: corral.dev/v1alpha1\nkind: Model\nmetadata:\n  name: deepy\nspec:\n  sim: ${'['.repeat(100000)}${']'.repeat(100000)}\n`;
  await rejects(t,
    '100k-deep YAML flow sequence',
    'PATCH',
    `${MODELS}/deepy?fieldManager=e2e`,
    { body: deepYaml, contentType: 'application/apply-patch+yaml' },
    { codes: [400, 413, 422], message: /depth|nest|deep/i },
  );
  // Past the depth limit but nowhere near a parser's stack: the limit's own message.
  const yaml1k = `apiVersion: corral.dev/v1alpha1\nkind: Model\nmetadata:\n  name: deep1k\nspec:\n  sim: ${'['.repeat(1000)}${']'.repeat(1000)}\n`;
  await rejects(
    t,
    '1000-deep YAML flow sequence',
    'PATCH',
    `${MODELS}/deep1k?fieldManager=e2e`,
    { body: yaml1k, contentType: 'application/apply-patch+yaml' },
    { codes: [400, 413, 422], message: /depth|nest|deep/i },
  );
  const deepPatch = `{"spec":{"sim":${'{"a":'.repeat(50000)}1${'}'.repeat(50000)}}}`;
  await rejects(t,
    '50k-deep merge patch',
    'PATCH',
    `${MODELS}/good`,
    { body: deepPatch, contentType: 'application/merge-patch+json' },
    { codes: [400, 413, 422], message: /depth|nest|deep/i },
  );
});

test('bad query parameters -> 400', async (t) => {
  await rejects(t, 'a malformed label selector', 'GET', `${MODELS}?labelSelector=${encodeURIComponent('a in (b')}`, {}, { codes: [400], reason: 'BadRequest', message: /selector|labelSelector/i });
  await rejects(t, 'an unknown field selector', 'GET', `${MODELS}?fieldSelector=spec.nope%3Dx`, {}, { codes: [400], reason: 'BadRequest', message: /spec\.nope|field/i });
  await rejects(t, 'a non-numeric limit', 'GET', `${MODELS}?limit=lots`, {}, { codes: [400], reason: 'BadRequest', message: /limit/ });
  await rejects(t, 'a continue token that is not one', 'GET', `${MODELS}?limit=1&continue=notatoken`, {}, { codes: [400, 410], message: /continue/i });
  await rejects(t, 'bad percent-encoding in the query', 'GET', `${MODELS}?limit=1&continue=%%%garbage`, {}, { codes: [400, 410] });
  await rejects(t, 'a bad dryRun value', 'POST', `${MODELS}?dryRun=Some`, { body: model('dr', NS) }, { codes: [400], reason: 'BadRequest', message: /dryRun|Some/ });
});
