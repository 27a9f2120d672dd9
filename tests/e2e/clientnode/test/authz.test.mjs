// Authorization matrix against a real `corral server`: every role (admin, viewer,
// node "node-a", a bad token, no token) x verb (get, list, watch, create, update,
// patch, delete, deletecollection) x kind (Node, Model, ModelDeployment, Replica,
// Event) gives the expected 2xx/401/403, every refusal as a Kubernetes Status; and
// a node may touch its own Node and the status of Replicas bound to it, nothing of
// another node's.
//
// Expectations follow api/auth.h: viewer reads everything; node reads Models, Nodes,
// Replicas (a named Replica only when bound to it), creates Events, creates and
// modifies its own Node, modifies the status of Replicas bound to it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CorralServer, G, describe, event, model, modelDeployment, node, replica, waitFor } from '../lib/harness.mjs';

const NS = 'authz';
const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];

// Per kind: collection path, the name of a fixture that exists, and a body maker.
const KINDS = {
  Node: { coll: `${G}/nodes`, fixture: 'node-fixture', make: (n) => node(n) },
  Model: { coll: `${G}/namespaces/${NS}/models`, fixture: 'm', make: (n) => model(n, NS) },
  ModelDeployment: {
    coll: `${G}/namespaces/${NS}/modeldeployments`,
    fixture: 'md',
    make: (n) => modelDeployment(n, NS),
  },
  // The fixture is bound to node-a, so node-a may get it.
  Replica: {
    coll: `${G}/namespaces/${NS}/replicas`,
    fixture: 'r-a',
    make: (n) => replica(n, NS, n === 'r-a' ? 'node-a' : 'node-b'),
  },
  Event: {
    coll: `/api/v1/namespaces/${NS}/events`,
    fixture: 'ev',
    make: (n) => event(n, NS, { apiVersion: 'corral.dev/v1alpha1', kind: 'Model', name: 'm', namespace: NS }),
  },
};

// Expected HTTP status per role, kind, verb.
function expected(role, kind, verb) {
  const ok = { get: 200, list: 200, watch: 200, create: 201, update: 200, patch: 200, delete: 200, deletecollection: 200 };
  const read = ['get', 'list', 'watch'].includes(verb);
  switch (role) {
    case 'admin':
      return ok[verb];
    case 'viewer':
      return read ? 200 : 403;
    case 'none':
    case 'bad':
      return 401;
    case 'node':
      if (kind === 'Model') return read ? 200 : 403;
      if (kind === 'Replica') return read ? 200 : 403; // get: its own fixture r-a
      if (kind === 'Event') return verb === 'create' ? 201 : 403;
      if (kind === 'ModelDeployment') return 403;
      if (kind === 'Node') {
        // create/update/patch target its own Node "node-a" (see nameFor).
        if (read || ['create', 'update', 'patch'].includes(verb)) return ok[verb];
        return 403;
      }
  }
  throw new Error(`no expectation for ${role} ${kind} ${verb}`);
}

let srv;
const tokens = {};

// The object a role's write targets: admin and the refused roles their own victims;
// node-a its own Node.
function nameFor(role, kind, verb) {
  if (kind === 'Node' && role === 'node' && !['get', 'deletecollection'].includes(verb)) return 'node-a';
  if (verb === 'create') return `new-${role}`;
  if (verb === 'delete') return `victim-${role}`;
  return KINDS[kind].fixture;
}

async function admin(method, p, body, contentType) {
  const r = await srv.request(method, p, { body, contentType });
  assert.ok(r.status >= 200 && r.status < 300, `setup: ${describe(method, p, r)}`);
  return r.json;
}

before(async () => {
  srv = await CorralServer.start('authz');
  for (const [kind, k] of Object.entries(KINDS)) {
    // A fixture, a victim per role for delete, two per role for deletecollection.
    const names = [k.fixture, ...['admin', 'viewer', 'node', 'none', 'bad'].map((r) => `victim-${r}`)];
    for (const n of names) {
      if (kind === 'Node' && n === 'node-a') continue;
      await admin('POST', k.coll, k.make(n));
    }
    for (const r of ['admin', 'viewer', 'node', 'none', 'bad']) {
      for (const i of [1, 2]) {
        const body = k.make(`coll-${r}-${i}`);
        body.metadata.labels = { 'authz-victim': r };
        await admin('POST', k.coll, body);
      }
    }
  }
  await admin('POST', `${G}/namespaces/${NS}/replicas`, replica('r-b', NS, 'node-b'));
  tokens.admin = srv.adminToken;
  tokens.viewer = srv.addToken('viewer-1', 'viewer');
  tokens.node = srv.addToken('node-a', 'node');
  tokens.nodeB = srv.addToken('node-b', 'node');
  tokens.bad = 'not-a-valid-token-0123456789abcdef';
  tokens.none = '';
  // The server re-reads the token file when it changes (checked about once a second).
  for (const r of ['viewer', 'node', 'nodeB']) {
    await waitFor(`token of ${r} accepted`, async () => (await srv.request('GET', '/apis', { token: tokens[r] })).status === 200);
  }
});

after(async () => {
  if (srv) await srv.cleanup();
});

// Builds and sends one verb's request as `role`.
async function send(role, kind, verb) {
  const k = KINDS[kind];
  const name = nameFor(role, kind, verb);
  const item = `${k.coll}/${name}`;
  const token = tokens[role];
  switch (verb) {
    case 'get':
      return ['GET', item, await srv.request('GET', item, { token })];
    case 'list':
      return ['GET', k.coll, await srv.request('GET', k.coll, { token })];
    case 'watch': {
      const p = `${k.coll}?watch=true&timeoutSeconds=2`;
      return ['GET', p, await srv.request('GET', p, { token, headersOnly: true })];
    }
    case 'create': {
      const body = k.make(name);
      return ['POST', k.coll, await srv.request('POST', k.coll, { token, body })];
    }
    case 'update': {
      // The current object (read as admin), with a label: a valid update.
      const cur = (await srv.request('GET', item)).json;
      if (cur && cur.metadata) {
        cur.metadata.labels = { ...(cur.metadata.labels || {}), updated: role };
      }
      return ['PUT', item, await srv.request('PUT', item, { token, body: cur })];
    }
    case 'patch': {
      const body = { metadata: { labels: { patched: role } } };
      return ['PATCH', item, await srv.request('PATCH', item, { token, body, contentType: 'application/merge-patch+json' })];
    }
    case 'delete':
      return ['DELETE', item, await srv.request('DELETE', item, { token })];
    case 'deletecollection': {
      const p = `${k.coll}?labelSelector=authz-victim%3D${role}`;
      return ['DELETE', p, await srv.request('DELETE', p, { token })];
    }
  }
  throw new Error(verb);
}

// A refusal must be a Status object whose code matches the HTTP status.
function statusProblems(res, want) {
  const reason = { 401: 'Unauthorized', 403: 'Forbidden' }[want];
  const s = res.json;
  if (!s) return 'body is not JSON';
  const problems = [];
  if (s.kind !== 'Status') problems.push(`kind ${JSON.stringify(s.kind)}, want "Status"`);
  if (s.apiVersion !== 'v1') problems.push(`apiVersion ${JSON.stringify(s.apiVersion)}, want "v1"`);
  if (s.status !== 'Failure') problems.push(`status ${JSON.stringify(s.status)}, want "Failure"`);
  if (s.code !== want) problems.push(`code ${s.code}, want ${want}`);
  if (s.reason !== reason) problems.push(`reason ${JSON.stringify(s.reason)}, want "${reason}"`);
  if (!s.message) problems.push('no message');
  return problems.join('; ');
}

for (const role of ['admin', 'viewer', 'node', 'bad', 'none']) {
  test(`authz matrix: ${role}`, async () => {
    const wrong = [];
    for (const kind of Object.keys(KINDS)) {
      for (const verb of VERBS) {
        const want = expected(role, kind, verb);
        const [method, p, res] = await send(role, kind, verb);
        if (res.status !== want) {
          wrong.push(`${kind} ${verb}: got ${res.status}, want ${want}: ${describe(method, p, res)}`);
          continue;
        }
        if (want >= 400) {
          const probs = statusProblems(res, want);
          if (probs) wrong.push(`${kind} ${verb}: ${res.status} but not a proper Status (${probs}): ${describe(method, p, res)}`);
          if (want === 403 && role === 'node' && !/node-a/.test(res.json?.message || '')) {
            wrong.push(`${kind} ${verb}: 403 message does not name the user: ${describe(method, p, res)}`);
          }
        }
      }
    }
    assert.deepEqual(wrong, [], `${wrong.length} cells differ:\n${wrong.join('\n')}`);
  });
}

test('refused writes left the objects in place', async () => {
  for (const [kind, k] of Object.entries(KINDS)) {
    for (const role of ['viewer', 'bad', 'none']) {
      const r = await srv.request('GET', `${k.coll}/victim-${role}`);
      assert.equal(r.status, 200, `${kind} victim-${role} must survive: ${describe('GET', `${k.coll}/victim-${role}`, r)}`);
      const l = await srv.request('GET', `${k.coll}?labelSelector=authz-victim%3D${role}`);
      assert.equal(l.json?.items?.length, 2, `${kind} coll-${role}-* must survive: ${describe('GET', k.coll, l)}`);
    }
    const l = await srv.request('GET', `${k.coll}?labelSelector=authz-victim%3Dadmin`);
    assert.equal(l.json?.items?.length, 0, `${kind}: admin's deletecollection removed its two: ${describe('GET', k.coll, l)}`);
  }
});

test("a node may not create or modify another node's Node", async () => {
  const nodes = `${G}/nodes`;
  let r = await srv.request('POST', nodes, { token: tokens.node, body: node('node-b') });
  assert.equal(r.status, 403, describe('POST', nodes, r));
  assert.match(r.json?.message || '', /node-a/);
  await admin('POST', nodes, node('node-b'));
  r = await srv.request('PATCH', `${nodes}/node-b`, {
    token: tokens.node,
    body: { metadata: { labels: { hijacked: 'yes' } } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(r.status, 403, describe('PATCH', `${nodes}/node-b`, r));
  const cur = (await srv.request('GET', `${nodes}/node-b`)).json;
  r = await srv.request('PUT', `${nodes}/node-b`, { token: tokens.node, body: cur });
  assert.equal(r.status, 403, describe('PUT', `${nodes}/node-b`, r));
  r = await srv.request('PUT', `${nodes}/node-b/status`, {
    token: tokens.node,
    body: { ...cur, status: { address: '10.0.0.66' } },
  });
  assert.equal(r.status, 403, describe('PUT', `${nodes}/node-b/status`, r));
  // Its own status is fine.
  const own = (await srv.request('GET', `${nodes}/node-a`)).json;
  r = await srv.request('PUT', `${nodes}/node-a/status`, {
    token: tokens.node,
    body: { ...own, status: { address: '10.0.0.1' } },
  });
  assert.equal(r.status, 200, describe('PUT', `${nodes}/node-a/status`, r));
  assert.equal(r.json?.status?.address, '10.0.0.1');
  const after = (await srv.request('GET', `${nodes}/node-b`)).json;
  assert.equal(after.metadata.labels?.hijacked, undefined);
  assert.equal(after.status?.address, cur.status?.address);
});

test('a node updates the status of replicas bound to it, never their spec, never others', async () => {
  const reps = `${G}/namespaces/${NS}/replicas`;
  const t = tokens.node;
  // Own replica, status: PUT and PATCH allowed.
  let cur = (await srv.request('GET', `${reps}/r-a`)).json;
  let r = await srv.request('PUT', `${reps}/r-a/status`, {
    token: t,
    body: { ...cur, status: { phase: 'Loading' } },
  });
  assert.equal(r.status, 200, describe('PUT', `${reps}/r-a/status`, r));
  assert.equal(r.json?.status?.phase, 'Loading');
  r = await srv.request('PATCH', `${reps}/r-a/status`, {
    token: t,
    body: { status: { phase: 'Ready', endpoint: 'http://10.0.0.1:9000' } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(r.status, 200, describe('PATCH', `${reps}/r-a/status`, r));
  assert.equal(r.json?.status?.phase, 'Ready');
  // A status write carrying a changed spec does not change the spec.
  cur = (await srv.request('GET', `${reps}/r-a`)).json;
  r = await srv.request('PUT', `${reps}/r-a/status`, {
    token: t,
    body: { ...cur, spec: { ...cur.spec, nodeName: 'node-b' }, status: { ...cur.status, phase: 'Draining' } },
  });
  assert.equal(r.status, 200, describe('PUT', `${reps}/r-a/status`, r));
  let stored = (await srv.request('GET', `${reps}/r-a`)).json;
  assert.equal(stored.spec.nodeName, 'node-a', 'status writes must not change spec');
  assert.equal(stored.status.phase, 'Draining');
  // Own replica, main resource: refused, except removing finalizers (drain).
  r = await srv.request('PATCH', `${reps}/r-a`, {
    token: t,
    body: { spec: { nodeName: 'node-b' } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(r.status, 403, describe('PATCH', `${reps}/r-a`, r));
  r = await srv.request('PUT', `${reps}/r-a`, {
    token: t,
    body: { ...stored, metadata: { ...stored.metadata, labels: { ...stored.metadata.labels, by: 'node' } } },
  });
  assert.equal(r.status, 403, describe('PUT', `${reps}/r-a`, r));
  r = await srv.request('DELETE', `${reps}/r-a`, { token: t });
  assert.equal(r.status, 403, describe('DELETE', `${reps}/r-a`, r));
  // Another node's replica: refused, status included, and not even readable by name.
  const other = (await srv.request('GET', `${reps}/r-b`)).json;
  r = await srv.request('PUT', `${reps}/r-b/status`, {
    token: t,
    body: { ...other, status: { phase: 'Failed' } },
  });
  assert.equal(r.status, 403, describe('PUT', `${reps}/r-b/status`, r));
  r = await srv.request('PATCH', `${reps}/r-b/status`, {
    token: t,
    body: { status: { phase: 'Failed' } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(r.status, 403, describe('PATCH', `${reps}/r-b/status`, r));
  r = await srv.request('GET', `${reps}/r-b`, { token: t });
  assert.equal(r.status, 403, describe('GET', `${reps}/r-b`, r));
  stored = (await srv.request('GET', `${reps}/r-b`)).json;
  assert.notEqual(stored.status?.phase, 'Failed');
  // node-b may update its own.
  r = await srv.request('PATCH', `${reps}/r-b/status`, {
    token: tokens.nodeB,
    body: { status: { phase: 'Loading' } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(r.status, 200, describe('PATCH', `${reps}/r-b/status`, r));
});

test('a node may not scale or touch ModelDeployments, nor delete Models', async () => {
  const t = tokens.node;
  const scale = `${G}/namespaces/${NS}/modeldeployments/md/scale`;
  let r = await srv.request('GET', scale, { token: t });
  assert.equal(r.status, 403, describe('GET', scale, r));
  r = await srv.request('PATCH', scale, {
    token: t,
    body: { spec: { replicas: 9 } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(r.status, 403, describe('PATCH', scale, r));
  r = await srv.request('PATCH', scale, {
    token: tokens.viewer,
    body: { spec: { replicas: 9 } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(r.status, 403, describe('PATCH (viewer)', scale, r));
  r = await srv.request('GET', scale, { token: tokens.viewer });
  assert.equal(r.status, 200, describe('GET (viewer)', scale, r));
  assert.equal(r.json?.kind, 'Scale');
});

test('discovery and version need a valid token too; 401 never leaks the token', async () => {
  for (const p of ['/apis', `${G}`, '/api', '/version']) {
    const r = await srv.request('GET', p, { token: tokens.bad });
    assert.equal(r.status, 401, describe('GET', p, r));
    assert.ok(!r.text.includes(tokens.bad), 'the token must not be echoed');
  }
  const log = srv.logTail(100000);
  for (const t of [tokens.admin, tokens.viewer, tokens.node]) {
    assert.ok(!log.includes(t), 'no token appears in the server log');
  }
});
