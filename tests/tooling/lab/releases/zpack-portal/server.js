'use strict';
/*
 * zpack-portal -- stand-in release for the local LXC lab.
 *
 * This is not the portal. It is the smallest program that fits the way the
 * infrastructure installs and runs the real zpack-portal release (a Next.js standalone
 * build), so the lab can exercise the real install steps end to end:
 *
 *   - The release is a .tar.gz whose top level holds server.js and package.json, as a
 *     Next.js standalone build does. It is unpacked into
 *     /opt/zpack-portal/releases/<version>/, /opt/zpack-portal/current points at it, and
 *     systemd runs `/usr/bin/node /opt/zpack-portal/current/server.js` as user
 *     zpack-portal with EnvironmentFile=/etc/zpack-portal/env.
 *   - It runs on Debian's nodejs (Node 18 on bookworm and later), CommonJS, no npm
 *     dependencies.
 *   - Environment (all required; the process exits with status 78 naming any that are
 *     missing or malformed):
 *       HOSTNAME           address to listen on (the variable Next.js standalone reads)
 *       PORT (3000)        port to listen on
 *       API_URL            the API's public URL, used by browsers
 *       API_INTERNAL_URL   the API's LAN URL, http://<api-lan>:8080, used server-side
 *   - GET /healthz answers 200 {"service":"zpack-portal","ok":true}; GET / answers a small
 *     HTML page. This stand-in does not call the API.
 *
 * The real release must provide the same: the same tarball layout, the same environment
 * and a GET /healthz that answers 200 when the portal is serving.
 */

const http = require('http');

const SERVICE = 'zpack-portal';
const EX_CONFIG = 78;
const REQUIRED = ['HOSTNAME', 'PORT', 'API_URL', 'API_INTERNAL_URL'];
const URLS = ['API_URL', 'API_INTERNAL_URL'];

function loadConfig(env) {
  const problems = [];
  for (const name of REQUIRED) {
    if (env[name] === undefined || env[name] === '') problems.push(`${name} is not set`);
  }
  const port = env.PORT;
  if (port !== undefined && port !== '') {
    if (!/^[0-9]+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
      problems.push('PORT is not a port number');
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
    host: env.HOSTNAME,
    port: Number(env.PORT),
    apiUrl: env.API_URL,
    apiInternalUrl: env.API_INTERNAL_URL,
  };
}

function escapeHtml(text) {
  return String(text)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function send(res, status, type, text) {
  res.writeHead(status, {
    'Content-Type': type,
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

  const page = [
    '<!doctype html>',
    '<html lang="en">',
    '<head><meta charset="utf-8"><title>ZeroLagHub</title></head>',
    '<body>',
    '<h1>ZeroLagHub</h1>',
    `<p>Portal stand-in. API: <a href="${escapeHtml(config.apiUrl)}">` +
      `${escapeHtml(config.apiUrl)}</a></p>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');

  const server = http.createServer((req, res) => {
    const path = (req.url || '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    } else if (path === '/healthz') {
      send(res, 200, 'application/json', JSON.stringify({ service: SERVICE, ok: true }));
    } else if (path === '/') {
      send(res, 200, 'text/html; charset=utf-8', page);
    } else {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
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
