'use strict';
/*
 * zpack-api -- stand-in release for the local LXC lab.
 *
 * This is not the platform API. It is the smallest program that fits the way the
 * infrastructure installs and runs the real zpack-api release, so the lab can exercise
 * the real install steps end to end:
 *
 *   - The release is a .tar.gz whose top level holds server.js and package.json. It is
 *     unpacked into /opt/zpack-api/releases/<version>/, /opt/zpack-api/current points at
 *     it, and systemd runs `/usr/bin/node /opt/zpack-api/current/server.js` as user
 *     zpack-api with EnvironmentFile=/etc/zpack-api/env.
 *   - It runs on Debian's nodejs (Node 18 on bookworm and later), CommonJS, no npm
 *     dependencies.
 *   - Environment (all required; the process exits with status 78 naming any that are
 *     missing or malformed, never printing a value):
 *       HOST, PORT (8080)                      address and port to listen on
 *       DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD    MariaDB
 *       REDIS_HOST, REDIS_PORT, REDIS_PASSWORD             Redis
 *       AGENT_PORT                             zlh-agent's port in game/dev containers
 *       PUBLIC_URL, PORTAL_URL                 the API's and the portal's public URLs
 *   - GET /healthz connects to MariaDB and to Redis with the delivered credentials on
 *     every request and answers
 *       200 {"service":"zpack-api","db":{"ok":true},"redis":{"ok":true}}
 *     when both answer, or 503 with {"ok":false,"error":"..."} for the one that failed.
 *     An error never contains a password.
 *
 * The real release must provide the same: the same tarball layout, the same
 * environment, and a /healthz that proves the database and Redis credentials work.
 *
 * What this file implements: a minimal MySQL/MariaDB client (v10 handshake,
 * HandshakeResponse41 with mysql_native_password, AuthSwitchRequest to
 * mysql_native_password, CLIENT_CONNECT_WITH_DB, COM_PING, ERR packets) and a minimal
 * RESP client (AUTH, PING), each bounded by a timeout.
 */

const crypto = require('crypto');
const http = require('http');
const net = require('net');

const SERVICE = 'zpack-api';
const CHECK_TIMEOUT_MS = 3000;
const EX_CONFIG = 78;

// ---------------------------------------------------------------------------------------
// Configuration

const REQUIRED = [
  'HOST',
  'PORT',
  'DB_HOST',
  'DB_PORT',
  'DB_NAME',
  'DB_USER',
  'DB_PASSWORD',
  'REDIS_HOST',
  'REDIS_PORT',
  'REDIS_PASSWORD',
  'AGENT_PORT',
  'PUBLIC_URL',
  'PORTAL_URL',
];
const PORTS = ['PORT', 'DB_PORT', 'REDIS_PORT', 'AGENT_PORT'];
const URLS = ['PUBLIC_URL', 'PORTAL_URL'];

function loadConfig(env) {
  const problems = [];
  for (const name of REQUIRED) {
    if (env[name] === undefined || env[name] === '') problems.push(`${name} is not set`);
  }
  for (const name of PORTS) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const port = Number(value);
    if (!/^[0-9]+$/.test(value) || port < 1 || port > 65535) {
      problems.push(`${name} is not a port number`);
    }
  }
  for (const name of URLS) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    let url = null;
    try {
      url = new URL(value);
    } catch (err) {
      url = null;
    }
    if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      problems.push(`${name} is not an http(s) URL`);
    }
  }
  if (problems.length > 0) return { problems };
  return {
    problems,
    host: env.HOST,
    port: Number(env.PORT),
    db: {
      host: env.DB_HOST,
      port: Number(env.DB_PORT),
      database: env.DB_NAME,
      user: env.DB_USER,
      password: env.DB_PASSWORD,
    },
    redis: {
      host: env.REDIS_HOST,
      port: Number(env.REDIS_PORT),
      password: env.REDIS_PASSWORD,
    },
  };
}

// ---------------------------------------------------------------------------------------
// A TCP exchange bounded by a deadline

class CheckError extends Error {}

// Opens a connection and hands `talk` a reader of the bytes received so far; `talk`
// resolves with the result or throws. The whole exchange, connect included, is bounded by
// `timeoutMs`. The socket is always destroyed at the end.
function exchange(host, port, timeoutMs, label, talk) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let buffer = Buffer.alloc(0);
    let waiter = null;
    let closed = null;
    let done = false;

    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => {
      finish(new CheckError(`no answer from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);

    const wake = () => {
      if (waiter !== null) {
        const w = waiter;
        waiter = null;
        w();
      }
    };
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      wake();
    });
    socket.on('error', (err) => {
      finish(new CheckError(`cannot reach ${host}:${port}: ${err.code || err.message}`));
    });
    socket.on('close', () => {
      closed = new CheckError(`${host}:${port} closed the connection`);
      wake();
    });

    // Waits until `n` bytes are buffered, then removes and returns them.
    const read = (n) =>
      new Promise((res, rej) => {
        const attempt = () => {
          if (buffer.length >= n) {
            const out = buffer.subarray(0, n);
            buffer = buffer.subarray(n);
            res(out);
          } else if (closed !== null) {
            rej(closed);
          } else {
            waiter = attempt;
          }
        };
        attempt();
      });
    // Waits for a CRLF-terminated line and returns it without the CRLF.
    const readLine = () =>
      new Promise((res, rej) => {
        const attempt = () => {
          const end = buffer.indexOf('\r\n');
          if (end >= 0) {
            const line = buffer.subarray(0, end).toString('utf8');
            buffer = buffer.subarray(end + 2);
            res(line);
          } else if (closed !== null) {
            rej(closed);
          } else {
            waiter = attempt;
          }
        };
        attempt();
      });
    const write = (data) => {
      socket.write(data);
    };

    socket.once('connect', () => {
      Promise.resolve()
        .then(() => talk({ read, readLine, write }))
        .then(
          (value) => finish(null, value),
          (err) => {
            if (err instanceof CheckError) finish(err);
            else finish(new CheckError(`${label} protocol error: ${err.message}`));
          }
        );
    });
  });
}

// ---------------------------------------------------------------------------------------
// MySQL / MariaDB client protocol (just enough for an authenticated COM_PING)

const CLIENT_LONG_PASSWORD = 0x00000001;
const CLIENT_LONG_FLAG = 0x00000004;
const CLIENT_CONNECT_WITH_DB = 0x00000008;
const CLIENT_PROTOCOL_41 = 0x00000200;
const CLIENT_TRANSACTIONS = 0x00002000;
const CLIENT_SECURE_CONNECTION = 0x00008000;
const CLIENT_PLUGIN_AUTH = 0x00080000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x00200000;

const NATIVE_PASSWORD = 'mysql_native_password';
const COM_QUIT = 0x01;
const COM_PING = 0x0e;
const UTF8MB4_GENERAL_CI = 45;

function sha1(...parts) {
  const hash = crypto.createHash('sha1');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))); empty password -> empty.
function nativePasswordToken(password, scramble) {
  if (password.length === 0) return Buffer.alloc(0);
  const stage1 = sha1(Buffer.from(password, 'utf8'));
  const stage2 = sha1(stage1);
  const mix = sha1(scramble, stage2);
  const token = Buffer.alloc(20);
  for (let i = 0; i < 20; i += 1) token[i] = stage1[i] ^ mix[i];
  return token;
}

function cstring(buf, offset) {
  const end = buf.indexOf(0, offset);
  if (end < 0) return { value: buf.subarray(offset).toString('utf8'), next: buf.length };
  return { value: buf.subarray(offset, end).toString('utf8'), next: end + 1 };
}

function errPacketMessage(payload) {
  // 0xFF, error code (2), ['#' + SQL state (5)], message
  const code = payload.length >= 3 ? payload.readUInt16LE(1) : 0;
  let state = '';
  let offset = 3;
  if (payload.length >= 9 && payload[3] === 0x23) {
    state = ` (${payload.subarray(4, 9).toString('latin1')})`;
    offset = 9;
  }
  const message = payload.subarray(offset).toString('utf8');
  return `server error ${code}${state}: ${message}`;
}

function lenenc(n) {
  if (n < 251) return Buffer.from([n]);
  const out = Buffer.alloc(3);
  out[0] = 0xfc;
  out.writeUInt16LE(n, 1);
  return out;
}

function mysqlPacket(seq, payload) {
  const header = Buffer.alloc(4);
  header.writeUIntLE(payload.length, 0, 3);
  header[3] = seq & 0xff;
  return Buffer.concat([header, payload]);
}

async function readMysqlPacket(io) {
  const header = await io.read(4);
  const length = header.readUIntLE(0, 3);
  const payload = await io.read(length);
  return { seq: header[3], payload };
}

function parseHandshake(payload) {
  if (payload[0] === 0xff) throw new CheckError(errPacketMessage(payload));
  if (payload[0] !== 10) {
    throw new CheckError(`unsupported handshake protocol version ${payload[0]}`);
  }
  let offset = 1;
  const version = cstring(payload, offset);
  offset = version.next + 4; // connection id
  const part1 = payload.subarray(offset, offset + 8);
  offset += 8 + 1; // filler
  let capabilities = payload.readUInt16LE(offset);
  offset += 2;
  let plugin = NATIVE_PASSWORD;
  let scramble = part1;
  if (payload.length > offset) {
    offset += 1 + 2; // character set, status flags
    capabilities |= payload.readUInt16LE(offset) << 16;
    offset += 2;
    const authDataLength = payload[offset];
    offset += 1 + 10; // reserved (MariaDB keeps its extended capabilities here)
    if (capabilities & CLIENT_SECURE_CONNECTION) {
      const length2 = Math.max(13, authDataLength - 8);
      let part2 = payload.subarray(offset, offset + length2);
      offset += length2;
      if (part2.length > 0 && part2[part2.length - 1] === 0) part2 = part2.subarray(0, -1);
      scramble = Buffer.concat([part1, part2]);
    }
    if (capabilities & CLIENT_PLUGIN_AUTH) plugin = cstring(payload, offset).value;
  }
  return { serverVersion: version.value, capabilities: capabilities >>> 0, scramble, plugin };
}

async function checkDatabase(db) {
  return exchange(db.host, db.port, CHECK_TIMEOUT_MS, 'db', async (io) => {
    const hello = await readMysqlPacket(io);
    const handshake = parseHandshake(hello.payload);
    const needed = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
    if ((handshake.capabilities & needed) !== needed) {
      throw new CheckError(`server ${handshake.serverVersion} does not speak protocol 4.1`);
    }
    const wanted =
      CLIENT_LONG_PASSWORD |
      CLIENT_LONG_FLAG |
      CLIENT_CONNECT_WITH_DB |
      CLIENT_PROTOCOL_41 |
      CLIENT_TRANSACTIONS |
      CLIENT_SECURE_CONNECTION |
      CLIENT_PLUGIN_AUTH |
      CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    const flags = (wanted & handshake.capabilities) >>> 0;
    if (!(flags & CLIENT_CONNECT_WITH_DB)) {
      throw new CheckError('server does not accept a database at connect');
    }

    // Answer with mysql_native_password whatever the server proposed; a server that wants
    // another method for this user sends an AuthSwitchRequest.
    const token = nativePasswordToken(db.password, handshake.scramble);
    const fixed = Buffer.alloc(32);
    fixed.writeUInt32LE(flags, 0);
    fixed.writeUInt32LE(16 * 1024 * 1024, 4);
    fixed[8] = UTF8MB4_GENERAL_CI;
    const parts = [fixed, Buffer.from(`${db.user}\0`, 'utf8')];
    if (flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) parts.push(lenenc(token.length), token);
    else parts.push(Buffer.from([token.length]), token);
    parts.push(Buffer.from(`${db.database}\0`, 'utf8'));
    if (flags & CLIENT_PLUGIN_AUTH) parts.push(Buffer.from(`${NATIVE_PASSWORD}\0`, 'utf8'));
    io.write(mysqlPacket(hello.seq + 1, Buffer.concat(parts)));

    let reply = await readMysqlPacket(io);
    if (reply.payload[0] === 0xfe && reply.payload.length > 1) {
      // AuthSwitchRequest: 0xFE, plugin name, plugin data (a new scramble).
      const name = cstring(reply.payload, 1);
      if (name.value !== NATIVE_PASSWORD) {
        throw new CheckError(`server asks for authentication method ${name.value}`);
      }
      let scramble = reply.payload.subarray(name.next);
      if (scramble.length > 0 && scramble[scramble.length - 1] === 0) {
        scramble = scramble.subarray(0, -1);
      }
      io.write(mysqlPacket(reply.seq + 1, nativePasswordToken(db.password, scramble)));
      reply = await readMysqlPacket(io);
    }
    if (reply.payload[0] === 0xff) throw new CheckError(errPacketMessage(reply.payload));
    if (reply.payload[0] === 0x01) {
      throw new CheckError('server wants more authentication data than mysql_native_password');
    }
    if (reply.payload[0] !== 0x00) {
      throw new CheckError(`unexpected authentication reply 0x${reply.payload[0].toString(16)}`);
    }

    io.write(mysqlPacket(0, Buffer.from([COM_PING])));
    const pong = await readMysqlPacket(io);
    if (pong.payload[0] === 0xff) throw new CheckError(errPacketMessage(pong.payload));
    if (pong.payload[0] !== 0x00) {
      throw new CheckError(`unexpected COM_PING reply 0x${pong.payload[0].toString(16)}`);
    }
    io.write(mysqlPacket(0, Buffer.from([COM_QUIT])));
    return true;
  });
}

// ---------------------------------------------------------------------------------------
// Redis (RESP): AUTH <password>, PING

function respCommand(...args) {
  const parts = [`*${args.length}\r\n`];
  for (const arg of args) parts.push(`$${Buffer.byteLength(arg, 'utf8')}\r\n${arg}\r\n`);
  return Buffer.from(parts.join(''), 'utf8');
}

async function checkRedis(redis) {
  return exchange(redis.host, redis.port, CHECK_TIMEOUT_MS, 'redis', async (io) => {
    io.write(respCommand('AUTH', redis.password));
    const auth = await io.readLine();
    if (auth.startsWith('-')) throw new CheckError(`AUTH failed: ${auth.slice(1)}`);
    if (auth !== '+OK') throw new CheckError('unexpected reply to AUTH');
    io.write(respCommand('PING'));
    const pong = await io.readLine();
    if (pong.startsWith('-')) throw new CheckError(`PING failed: ${pong.slice(1)}`);
    if (pong !== '+PONG') throw new CheckError('unexpected reply to PING');
    return true;
  });
}

// ---------------------------------------------------------------------------------------
// HTTP

function redact(message, secrets) {
  let out = String(message);
  for (const secret of secrets) {
    if (secret) out = out.split(secret).join('***');
  }
  return out;
}

async function component(check, secrets) {
  try {
    await check();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: redact(err.message, secrets) };
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

function main() {
  const config = loadConfig(process.env);
  if (config.problems.length > 0) {
    process.stderr.write(`${SERVICE}: bad environment: ${config.problems.join('; ')}\n`);
    process.exit(EX_CONFIG);
  }
  const secrets = [config.db.password, config.redis.password];

  const server = http.createServer((req, res) => {
    const path = (req.url || '/').split('?')[0];
    if (path !== '/healthz') {
      sendJson(res, 404, { service: SERVICE, error: 'not found' });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendJson(res, 405, { service: SERVICE, error: 'method not allowed' });
      return;
    }
    Promise.all([
      component(() => checkDatabase(config.db), secrets),
      component(() => checkRedis(config.redis), secrets),
    ]).then(([db, redis]) => {
      const status = db.ok && redis.ok ? 200 : 503;
      if (status !== 200) {
        const failed = [];
        if (!db.ok) failed.push(`db: ${db.error}`);
        if (!redis.ok) failed.push(`redis: ${redis.error}`);
        process.stderr.write(`${SERVICE}: /healthz ${status}: ${failed.join('; ')}\n`);
      }
      sendJson(res, status, { service: SERVICE, db, redis });
    });
  });

  server.on('error', (err) => {
    const where = `${config.host}:${config.port}`;
    process.stderr.write(`${SERVICE}: cannot listen on ${where}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(config.port, config.host, () => {
    process.stdout.write(`${SERVICE}: listening on ${config.host}:${config.port}\n`);
  });

  const stop = (signal) => {
    process.stdout.write(`${SERVICE}: ${signal}, stopping\n`);
    server.close(() => process.exit(0));
    if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main();
