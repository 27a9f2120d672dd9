// Starts and stops `corral server` for the node e2e tests and sends raw requests.
//
// Environment: CORRAL_BIN (required): the corral binary; CORRAL_TEST_PGDIR (optional):
// a running shared test cluster (CTest fixture `testdb`); each server then gets a
// fresh database in it, else the server runs its embedded PostgreSQL in the data dir.
// E2E_KEEP=1 keeps the temp dir.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';

import * as k8s from '@kubernetes/client-node';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Polls fn until it returns a truthy value; throws `what` after timeoutMs.
export async function waitFor(what, fn, timeoutMs = 20000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(everyMs);
  }
}

export class CorralServer {
  constructor(name) {
    this.name = name;
    this.bin = process.env.CORRAL_BIN;
    if (!this.bin) throw new Error('CORRAL_BIN must name the corral binary');
    // Under /tmp: the embedded PostgreSQL runs as an unprivileged user when we are root.
    this.tmp = fs.mkdtempSync(`/tmp/corral-e2e-${name}-`);
    fs.chmodSync(this.tmp, 0o755);
    this.dataDir = path.join(this.tmp, 'data');
    fs.mkdirSync(this.dataDir, { mode: 0o755 });
    this.logFile = path.join(this.tmp, 'server.log');
    this.child = null;
    this.dbName = '';
    this.adminDsn = '';
    this.dsn = '';
    this.port = 0;
    this.onExit = () => this.child && this.child.kill('SIGKILL');
    process.on('exit', this.onExit);
  }

  static async start(name) {
    const s = new CorralServer(name);
    try {
      s.prepareDb();
      s.port = await freePort();
      await s.launch();
    } catch (e) {
      await s.cleanup(true);
      throw e;
    }
    return s;
  }

  prepareDb() {
    const dir = process.env.CORRAL_TEST_PGDIR;
    if (!dir || !fs.existsSync(dir)) return;
    const dsn = execFileSync(this.bin, ['db', 'dsn', '--data-dir', dir], { encoding: 'utf8' }).trim();
    this.adminDsn = dsn.replace(/dbname='[^']*'/, "dbname='postgres'");
    this.dbName = `e2e_${this.name.replace(/[^a-z0-9]/g, '_')}_${process.pid}`;
    execFileSync('psql', [this.adminDsn, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', `CREATE DATABASE "${this.dbName}"`]);
    this.dsn = dsn.replace(/dbname='[^']*'/, `dbname='${this.dbName}'`);
  }

  // Starts the server (again: same port, data dir and database) and waits for /readyz.
  async launch() {
    const args = ['server', '--data-dir', this.dataDir, '--listen', `127.0.0.1:${this.port}`];
    if (this.dsn) args.push('--database-url', this.dsn);
    const log = fs.openSync(this.logFile, 'a');
    this.child = spawn(this.bin, args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    const child = this.child;
    let exited = false;
    child.on('exit', () => {
      exited = true;
    });
    const kubeconfigPath = path.join(this.dataDir, 'admin.kubeconfig');
    await waitFor(
      'admin.kubeconfig',
      () => {
        if (exited) throw new Error(`server exited; log:\n${this.logTail()}`);
        return fs.existsSync(kubeconfigPath) && fs.statSync(kubeconfigPath).size > 0;
      },
      120000,
    );
    this.kubeconfigPath = kubeconfigPath;
    this.kc = new k8s.KubeConfig();
    this.kc.loadFromFile(kubeconfigPath);
    const cluster = this.kc.getCurrentCluster();
    this.url = new URL(cluster.server);
    this.ca = cluster.caData ? Buffer.from(cluster.caData, 'base64') : cluster.caFile ? fs.readFileSync(cluster.caFile) : undefined;
    this.adminToken = this.kc.getCurrentUser().token;
    await waitFor(
      '/readyz 200',
      async () => {
        if (exited) throw new Error(`server exited; log:\n${this.logTail()}`);
        const r = await this.request('GET', '/readyz');
        return r.status === 200;
      },
      120000,
    );
  }

  // A fresh KubeConfig for the admin user (each client its own).
  kubeConfig() {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(this.kubeconfigPath);
    return kc;
  }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.child = null;
      return;
    }
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 30000);
    await done;
    clearTimeout(t);
    this.child = null;
  }

  async restart() {
    await this.stop();
    await this.launch();
  }

  async cleanup(failed = false) {
    await this.stop();
    process.off('exit', this.onExit);
    if (this.dbName) {
      try {
        execFileSync('psql', [this.adminDsn, '-qAt', '-c', `DROP DATABASE IF EXISTS "${this.dbName}" WITH (FORCE)`]);
      } catch {
        // best effort: the cluster is thrown away at the end of the run anyway
      }
    }
    if (failed || process.env.E2E_KEEP === '1') {
      console.error(`kept ${this.tmp}; server log tail:\n${this.logTail()}`);
    } else {
      fs.rmSync(this.tmp, { recursive: true, force: true });
    }
  }

  logTail(lines = 60) {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  // `corral token add`: a new token for user/role (the server re-reads the file).
  addToken(user, role) {
    return execFileSync(this.bin, ['token', 'add', '--data-dir', this.dataDir, '--user', user, '--role', role], {
      encoding: 'utf8',
    }).trim();
  }

  // A raw request. opts: token (default admin; '' for none), body (string|Buffer|object:
  // JSON-encoded), contentType, accept, headers, headersOnly (resolve when the response
  // head arrives and close: for watches), timeoutMs.
  // Resolves {status, headers, text, json} (json undefined when not JSON).
  request(method, p, opts = {}) {
    const token = opts.token === undefined ? this.adminToken : opts.token;
    const headers = { Accept: opts.accept || 'application/json', ...(opts.headers || {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    let body = opts.body;
    if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) body = JSON.stringify(body);
    if (body !== undefined) {
      if (opts.contentType !== null) headers['Content-Type'] = opts.contentType || 'application/json';
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    const mod = this.url.protocol === 'https:' ? https : http;
    const timeoutMs = opts.timeoutMs || 30000;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        {
          host: this.url.hostname,
          port: this.url.port,
          path: p,
          method,
          headers,
          ca: this.ca,
          agent: false,
        },
        (res) => {
          if (opts.headersOnly && res.statusCode < 300) {
            resolve({ status: res.statusCode, headers: res.headers, text: '', json: undefined });
            res.destroy();
            req.destroy();
            return;
          }
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode, headers: res.headers, text, json });
          });
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${p}: no answer in ${timeoutMs} ms`)));
      req.on('error', reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  }
}

// One line describing a request and its response, for assertion messages.
export function describe(method, p, res) {
  const text = res.text.length > 600 ? `${res.text.slice(0, 600)}…` : res.text;
  return `${method} ${p} -> ${res.status} ${text}`;
}

export const G = '/apis/corral.dev/v1alpha1';
export const group = 'corral.dev';
export const version = 'v1alpha1';

export function model(name, namespace, extra = {}) {
  return {
    apiVersion: 'corral.dev/v1alpha1',
    kind: 'Model',
    metadata: { name, namespace, ...(extra.metadata || {}) },
    spec: { engine: 'sim', source: 'sim://tiny', resources: { memoryBytes: 1000 }, ...(extra.spec || {}) },
  };
}

export function modelDeployment(name, namespace, replicas = 1, extra = {}) {
  return {
    apiVersion: 'corral.dev/v1alpha1',
    kind: 'ModelDeployment',
    metadata: { name, namespace, ...(extra.metadata || {}) },
    spec: { modelRef: { name: 'm' }, replicas, ...(extra.spec || {}) },
  };
}

export function replica(name, namespace, nodeName, extra = {}) {
  return {
    apiVersion: 'corral.dev/v1alpha1',
    kind: 'Replica',
    metadata: { name, namespace, ...(extra.metadata || {}) },
    spec: { modelRef: { name: 'm' }, nodeName, ...(extra.spec || {}) },
  };
}

export function node(name, extra = {}) {
  return {
    apiVersion: 'corral.dev/v1alpha1',
    kind: 'Node',
    metadata: { name, ...(extra.metadata || {}) },
    spec: { unschedulable: false, ...(extra.spec || {}) },
  };
}

export function event(name, namespace, involved) {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name, namespace },
    involvedObject: involved,
    reason: 'E2E',
    message: 'made by the e2e suite',
    type: 'Normal',
    count: 1,
    firstTimestamp: now,
    lastTimestamp: now,
    source: { component: 'e2e' },
  };
}
