// @kubernetes/client-node (1.4.x) against a real `corral server`: CustomObjectsApi
// CRUD, the three patch content types, /status and /scale, Watch, and an informer
// whose cache stays exact across a server restart.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as k8s from '@kubernetes/client-node';

import { CorralServer, G, describe, group, model, modelDeployment, node, version, waitFor } from '../lib/harness.mjs';

const { CustomObjectsApi, PatchStrategy, Watch, makeInformer, setHeaderOptions } = k8s;
const NS = 'cn';
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const apply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

let srv;
let api;

before(async () => {
  srv = await CorralServer.start('clientnode');
  api = srv.kubeConfig().makeApiClient(CustomObjectsApi);
});

after(async () => {
  if (srv) await srv.cleanup();
});

const models = (extra = {}) => ({ group, version, namespace: NS, plural: 'models', ...extra });
const mds = (extra = {}) => ({ group, version, namespace: NS, plural: 'modeldeployments', ...extra });

// Runs fn, which must fail with an ApiException of `code`; returns the parsed body.
async function rejects(code, fn) {
  try {
    await fn();
  } catch (e) {
    assert.equal(e.code, code, `want HTTP ${code}, got ${e.code}: ${e.message} ${e.body || ''}`);
    return typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
  }
  assert.fail(`want HTTP ${code}, the call succeeded`);
}

test('CustomObjectsApi create/get/list/replace/delete', async () => {
  const created = await api.createNamespacedCustomObject(models({ body: model('cn1', NS, { metadata: { labels: { app: 'cn' } } }) }));
  assert.equal(created.metadata.name, 'cn1');
  assert.equal(created.metadata.namespace, NS);
  assert.match(created.metadata.uid, /^[0-9a-f-]{36}$/);
  assert.match(created.metadata.resourceVersion, /^[0-9]+$/);
  assert.equal(created.metadata.generation, 1);
  assert.match(created.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  const got = await api.getNamespacedCustomObject(models({ name: 'cn1' }));
  assert.deepEqual(got.spec, created.spec);
  assert.equal(got.metadata.resourceVersion, created.metadata.resourceVersion);

  await api.createNamespacedCustomObject(models({ body: model('cn2', NS) }));
  const list = await api.listNamespacedCustomObject(models());
  assert.equal(list.kind, 'ModelList');
  assert.equal(list.apiVersion, 'corral.dev/v1alpha1');
  assert.match(list.metadata.resourceVersion, /^[0-9]+$/);
  assert.deepEqual(list.items.map((i) => i.metadata.name).sort(), ['cn1', 'cn2']);
  const selected = await api.listNamespacedCustomObject(models({ labelSelector: 'app=cn' }));
  assert.deepEqual(selected.items.map((i) => i.metadata.name), ['cn1']);
  const page = await api.listNamespacedCustomObject(models({ limit: 1 }));
  assert.equal(page.items.length, 1);
  assert.ok(page.metadata.continue, 'a limited list has a continue token');
  const rest = await api.listNamespacedCustomObject(models({ limit: 1, _continue: page.metadata.continue }));
  assert.equal(rest.items.length, 1);
  assert.notEqual(rest.items[0].metadata.name, page.items[0].metadata.name);

  const changed = structuredClone(got);
  changed.spec.resources.memoryBytes = 4242;
  const replaced = await api.replaceNamespacedCustomObject(models({ name: 'cn1', body: changed }));
  assert.equal(replaced.spec.resources.memoryBytes, 4242);
  assert.equal(replaced.metadata.generation, 2);
  assert.ok(BigInt(replaced.metadata.resourceVersion) > BigInt(got.metadata.resourceVersion));

  // got carries the old resourceVersion now: a stale replace is a Conflict.
  const stale = await rejects(409, () => api.replaceNamespacedCustomObject(models({ name: 'cn1', body: got })));
  assert.equal(stale.kind, 'Status');
  assert.equal(stale.reason, 'Conflict');

  const dup = await rejects(409, () => api.createNamespacedCustomObject(models({ body: model('cn2', NS) })));
  assert.equal(dup.reason, 'AlreadyExists');

  const deleted = await api.deleteNamespacedCustomObject(models({ name: 'cn2' }));
  assert.ok(deleted, 'delete returns a body');
  const nf = await rejects(404, () => api.getNamespacedCustomObject(models({ name: 'cn2' })));
  assert.equal(nf.reason, 'NotFound');
  assert.equal(nf.details?.name, 'cn2');
  await rejects(404, () => api.deleteNamespacedCustomObject(models({ name: 'cn2' })));
});

test('CustomObjectsApi patch: JSON Patch (default), merge, apply', async () => {
  await api.createNamespacedCustomObject(models({ body: model('p1', NS) }));

  const jp = await api.patchNamespacedCustomObject(
    models({ name: 'p1', body: [{ op: 'replace', path: '/spec/resources/memoryBytes', value: 7 }] }),
  );
  assert.equal(jp.spec.resources.memoryBytes, 7, 'JSON Patch is the default content type');

  const mp = await api.patchNamespacedCustomObject(
    models({ name: 'p1', body: { metadata: { labels: { x: 'y' } }, spec: { contextLength: 2048 } } }),
    merge,
  );
  assert.equal(mp.metadata.labels.x, 'y');
  assert.equal(mp.spec.contextLength, 2048);
  assert.equal(mp.spec.resources.memoryBytes, 7, 'merge patch keeps what it does not name');

  const removed = await api.patchNamespacedCustomObject(models({ name: 'p1', body: { spec: { contextLength: null } } }), merge);
  assert.equal(removed.spec.contextLength, undefined, 'null removes a field in a merge patch');

  // A resourceVersion in a patch is a precondition.
  const pre = await rejects(409, () =>
    api.patchNamespacedCustomObject(models({ name: 'p1', body: { metadata: { resourceVersion: '1' }, spec: { contextLength: 1 } } }), merge),
  );
  assert.equal(pre.reason, 'Conflict');

  // Server-side apply: creates when missing (201), updates, removes fields the manager dropped.
  const applied = await api.patchNamespacedCustomObjectWithHttpInfo(
    models({ name: 'a1', body: model('a1', NS, { spec: { contextLength: 1024 } }), fieldManager: 'cn-test' }),
    apply,
  );
  assert.equal(applied.httpStatusCode, 201, 'apply creates');
  assert.equal(applied.data.spec.contextLength, 1024);
  const mf = applied.data.metadata.managedFields || [];
  assert.ok(
    mf.some((e) => e.manager === 'cn-test' && e.operation === 'Apply'),
    `managedFields name the manager: ${JSON.stringify(mf)}`,
  );
  const reapplied = await api.patchNamespacedCustomObjectWithHttpInfo(
    models({ name: 'a1', body: model('a1', NS), fieldManager: 'cn-test' }),
    apply,
  );
  assert.equal(reapplied.httpStatusCode, 200);
  assert.equal(reapplied.data.spec.contextLength, undefined, 'a field the manager no longer applies is removed');

  // A second manager conflicts, with the field named; force takes it.
  const conflict = await rejects(409, () =>
    api.patchNamespacedCustomObject(
      models({ name: 'a1', body: model('a1', NS, { spec: { resources: { memoryBytes: 99 } } }), fieldManager: 'other' }),
      apply,
    ),
  );
  assert.equal(conflict.reason, 'Conflict');
  assert.ok(
    (conflict.details?.causes || []).some((c) => c.field === '.spec.resources.memoryBytes'),
    `causes name .spec.resources.memoryBytes: ${JSON.stringify(conflict.details)}`,
  );
  const forced = await api.patchNamespacedCustomObject(
    models({ name: 'a1', body: model('a1', NS, { spec: { resources: { memoryBytes: 99 } } }), fieldManager: 'other', force: true }),
    apply,
  );
  assert.equal(forced.spec.resources.memoryBytes, 99);

  // Apply without a field manager is refused (400/422), nothing changes.
  const noManager = await srv.request('PATCH', `${G}/namespaces/${NS}/models/a1`, {
    body: model('a1', NS, { spec: { resources: { memoryBytes: 1 } } }),
    contentType: 'application/apply-patch+yaml',
  });
  assert.ok([400, 422].includes(noManager.status), describe('PATCH (apply, no fieldManager)', 'a1', noManager));
  const still = await api.getNamespacedCustomObject(models({ name: 'a1' }));
  assert.equal(still.spec.resources.memoryBytes, 99);

  // Dry run persists nothing.
  const dry = await api.patchNamespacedCustomObject(models({ name: 'p1', body: { spec: { contextLength: 5 } }, dryRun: 'All' }), merge);
  assert.equal(dry.spec.contextLength, 5);
  const afterDry = await api.getNamespacedCustomObject(models({ name: 'p1' }));
  assert.equal(afterDry.spec.contextLength, undefined);
});

test('status subresource: get/replace/patch change only .status; writes to the object ignore .status', async () => {
  const md = await api.createNamespacedCustomObject(mds({ body: modelDeployment('s1', NS, 2) }));
  assert.equal(md.status?.readyReplicas, undefined, '.status is dropped on create');
  const st = await api.getNamespacedCustomObjectStatus(mds({ name: 's1' }));
  assert.equal(st.metadata.name, 's1');

  const patched = await api.patchNamespacedCustomObjectStatus(
    mds({ name: 's1', body: { status: { replicas: 2, readyReplicas: 1 }, spec: { replicas: 9 } } }),
    merge,
  );
  assert.equal(patched.status.readyReplicas, 1);
  assert.equal(patched.spec.replicas, 2, 'a status patch does not change spec');
  assert.equal(patched.metadata.generation, md.metadata.generation, 'status writes do not bump generation');

  const cur = await api.getNamespacedCustomObject(mds({ name: 's1' }));
  cur.status.readyReplicas = 2;
  const replaced = await api.replaceNamespacedCustomObjectStatus(mds({ name: 's1', body: cur }));
  assert.equal(replaced.status.readyReplicas, 2);

  const cur2 = await api.getNamespacedCustomObject(mds({ name: 's1' }));
  cur2.status.readyReplicas = 0;
  cur2.spec.replicas = 3;
  const main = await api.replaceNamespacedCustomObject(mds({ name: 's1', body: cur2 }));
  assert.equal(main.spec.replicas, 3);
  assert.equal(main.status.readyReplicas, 2, 'a write to the object ignores .status');

  // Cluster-scoped kind with status.
  await api.createClusterCustomObject({ group, version, plural: 'nodes', body: node('cn-node') });
  const ns = await api.patchClusterCustomObjectStatus(
    { group, version, plural: 'nodes', name: 'cn-node', body: { status: { address: '10.1.2.3' } } },
    merge,
  );
  assert.equal(ns.status.address, '10.1.2.3');
  const n = await api.getClusterCustomObject({ group, version, plural: 'nodes', name: 'cn-node' });
  assert.equal(n.metadata.namespace, undefined, 'cluster-scoped objects have no namespace');
  const nodes = await api.listClusterCustomObject({ group, version, plural: 'nodes' });
  assert.ok(nodes.items.some((i) => i.metadata.name === 'cn-node'));
  await api.deleteClusterCustomObject({ group, version, plural: 'nodes', name: 'cn-node' });
});

test('scale subresource: get, patch, replace', async () => {
  await api.createNamespacedCustomObject(mds({ body: modelDeployment('sc1', NS, 1) }));
  const s = await api.getNamespacedCustomObjectScale(mds({ name: 'sc1' }));
  assert.equal(s.kind, 'Scale');
  assert.equal(s.apiVersion, 'autoscaling/v1');
  assert.equal(s.metadata.name, 'sc1');
  assert.equal(s.metadata.namespace, NS);
  assert.equal(s.spec.replicas, 1);
  assert.equal(typeof s.status?.replicas, 'number');

  const p = await api.patchNamespacedCustomObjectScale(mds({ name: 'sc1', body: { spec: { replicas: 3 } } }), merge);
  assert.equal(p.kind, 'Scale');
  assert.equal(p.spec.replicas, 3);

  const cur = await api.getNamespacedCustomObjectScale(mds({ name: 'sc1' }));
  const r = await api.replaceNamespacedCustomObjectScale(mds({ name: 'sc1', body: { ...cur, spec: { replicas: 4 } } }));
  assert.equal(r.spec.replicas, 4);
  const md = await api.getNamespacedCustomObject(mds({ name: 'sc1' }));
  assert.equal(md.spec.replicas, 4, 'scale writes spec.replicas');

  // A stale resourceVersion in a Scale PUT is a Conflict.
  await rejects(409, () => api.replaceNamespacedCustomObjectScale(mds({ name: 'sc1', body: { ...cur, spec: { replicas: 5 } } })));
  const neg = await rejects(422, () => api.patchNamespacedCustomObjectScale(mds({ name: 'sc1', body: { spec: { replicas: -1 } } }), merge));
  assert.equal(neg.reason, 'Invalid');
});

// Collects watch events until stop() is called.
async function startWatch(kc, path, params) {
  const events = [];
  let ended = null;
  const ctl = await new Watch(kc).watch(
    path,
    params,
    (type, obj) => events.push({ type, name: obj?.metadata?.name, rv: obj?.metadata?.resourceVersion, obj }),
    (err) => {
      ended = err || 'closed';
    },
  );
  return { events, ctl, ended: () => ended };
}

test('Watch: events in order, replay from a resourceVersion', async () => {
  const kc = srv.kubeConfig();
  const path = `${G}/namespaces/${NS}-w/models`;
  const wapi = kc.makeApiClient(CustomObjectsApi);
  const ns = (extra = {}) => ({ group, version, namespace: `${NS}-w`, plural: 'models', ...extra });
  const start = await wapi.listNamespacedCustomObject(ns());
  const w = await startWatch(kc, path, { resourceVersion: start.metadata.resourceVersion });
  try {
    await wapi.createNamespacedCustomObject(ns({ body: model('w1', `${NS}-w`) }));
    await wapi.patchNamespacedCustomObject(ns({ name: 'w1', body: { metadata: { labels: { a: 'b' } } } }), merge);
    await wapi.deleteNamespacedCustomObject(ns({ name: 'w1' }));
    await waitFor('3 watch events', () => w.events.length >= 3);
    assert.deepEqual(
      w.events.map((e) => `${e.type} ${e.name}`),
      ['ADDED w1', 'MODIFIED w1', 'DELETED w1'],
    );
    assert.equal(w.events[1].obj.metadata.labels.a, 'b');
    const rvs = w.events.map((e) => BigInt(e.rv));
    assert.ok(rvs[0] < rvs[1] && rvs[1] < rvs[2], `resourceVersions increase: ${rvs}`);
    assert.equal(w.ended(), null, 'the watch stays open');

    // The same changes again, replayed from the start resourceVersion.
    const r = await startWatch(kc, path, { resourceVersion: start.metadata.resourceVersion });
    try {
      await waitFor('3 replayed events', () => r.events.length >= 3);
      assert.deepEqual(
        r.events.map((e) => `${e.type} ${e.name} ${e.rv}`),
        w.events.map((e) => `${e.type} ${e.name} ${e.rv}`),
      );
    } finally {
      r.ctl.abort();
    }

    // Without a resourceVersion: the current state first, as ADDED.
    await wapi.createNamespacedCustomObject(ns({ body: model('w2', `${NS}-w`) }));
    const c = await startWatch(kc, path, {});
    try {
      await waitFor('synthetic ADDED', () => c.events.length >= 1);
      assert.deepEqual(c.events.map((e) => `${e.type} ${e.name}`), ['ADDED w2']);
    } finally {
      c.ctl.abort();
    }

    // timeoutSeconds closes the stream.
    const t = await startWatch(kc, path, { resourceVersion: start.metadata.resourceVersion, timeoutSeconds: 1 });
    await waitFor('watch closed by timeoutSeconds', () => t.ended() !== null, 10000);
  } finally {
    w.ctl.abort();
  }
});

test('informer keeps an exact cache across a server restart', async () => {
  const nsName = `${NS}-inf`;
  const kc = srv.kubeConfig();
  const iapi = kc.makeApiClient(CustomObjectsApi);
  const ns = (extra = {}) => ({ group, version, namespace: nsName, plural: 'models', ...extra });
  for (const n of ['i1', 'i2', 'i3']) await iapi.createNamespacedCustomObject(ns({ body: model(n, nsName) }));

  const informer = makeInformer(kc, `${G}/namespaces/${nsName}/models`, () => iapi.listNamespacedCustomObject(ns()));
  let stopped = false;
  let errors = 0;
  // client-node's informer stops on an error; restarting it resumes the watch from
  // the last resourceVersion it saw (or re-lists after a 410).
  informer.on('error', () => {
    errors += 1;
    if (!stopped) setTimeout(() => !stopped && informer.start().catch(() => {}), 500);
  });

  // What the informer holds vs what the store lists, as name -> resourceVersion.
  const snapshot = (items) => Object.fromEntries(items.map((i) => [i.metadata.name, i.metadata.resourceVersion]));
  const converged = async () => {
    const r = await srv.request('GET', `${G}/namespaces/${nsName}/models`);
    const store = snapshot(r.json.items);
    const cache = snapshot(informer.list(nsName));
    return JSON.stringify(Object.entries(store).sort()) === JSON.stringify(Object.entries(cache).sort()) ? { store, cache } : false;
  };
  const expectConverged = async (what) => {
    try {
      await waitFor(what, converged, 30000);
    } catch (e) {
      const r = await srv.request('GET', `${G}/namespaces/${nsName}/models`);
      assert.deepEqual(snapshot(informer.list(nsName)), snapshot(r.json.items), `${what}: ${e.message}`);
    }
  };

  try {
    await informer.start();
    await expectConverged('initial list');

    // Changes while it runs.
    await iapi.createNamespacedCustomObject(ns({ body: model('i4', nsName) }));
    await iapi.patchNamespacedCustomObject(ns({ name: 'i1', body: { metadata: { labels: { v: '1' } } } }), merge);
    await iapi.deleteNamespacedCustomObject(ns({ name: 'i2' }));
    await expectConverged('changes while running');
    assert.equal(informer.get('i1', nsName)?.metadata.labels?.v, '1');

    // Restart the server; another client writes before the informer reconnects.
    await srv.stop();
    await srv.restart();
    const other = srv.kubeConfig().makeApiClient(CustomObjectsApi);
    await other.createNamespacedCustomObject(ns({ body: model('i5', nsName) }));
    await other.patchNamespacedCustomObject(ns({ name: 'i3', body: { metadata: { labels: { v: '2' } } } }), merge);
    await other.deleteNamespacedCustomObject(ns({ name: 'i4' }));
    await expectConverged('after the restart');
    assert.equal(informer.get('i3', nsName)?.metadata.labels?.v, '2');
    assert.equal(informer.get('i4', nsName), undefined);
    assert.ok(errors >= 1, 'the informer noticed the outage');

    // And it keeps following.
    await other.createNamespacedCustomObject(ns({ body: model('i6', nsName) }));
    await expectConverged('after the restart, later changes');
  } finally {
    stopped = true;
    await informer.stop();
  }
});
