// The web UI's files on the control server: GET and HEAD of regular files under the mounted
// directories, nothing else (no listings, no way out of a mount, no symlinks pointing outside).
import { createReadStream, realpathSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, sep } from 'node:path';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

export function mimeType(path: string): string {
  return MIME[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

interface Mount {
  /** URL prefix, starting and ending with "/". */
  prefix: string;
  /** Real path of the directory. */
  root: string;
}

export interface StaticFiles {
  /** Serves the request, or returns false when no mount covers its path (the caller answers 404). */
  handle(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): boolean;
}

function normalizePrefix(prefix: string): string {
  let p = prefix.startsWith('/') ? prefix : `/${prefix}`;
  if (!p.endsWith('/')) p = `${p}/`;
  return p;
}

/** URL path segments, decoded; undefined for anything that could step outside a directory. */
function safeSegments(pathname: string): string[] | undefined {
  const segments: string[] = [];
  for (const raw of pathname.split('/')) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    if (segment === '..' || segment === '.' || segment.includes('/') || segment.includes('\\') || segment.includes('\0')) return undefined;
    segments.push(segment);
  }
  return segments;
}

function mountRoot(prefix: string, dir: string): string {
  try {
    const root = realpathSync(dir);
    if (statSync(root).isDirectory()) return root;
  } catch {
    // Reported below, naming the mount.
  }
  throw new Error(`The static files for ${prefix} should be in the directory ${dir}, which does not exist.`);
}

export function createStaticFiles(mounts: Record<string, string>): StaticFiles {
  const list: Mount[] = Object.entries(mounts)
    .map(([prefix, dir]) => ({ prefix: normalizePrefix(prefix), root: mountRoot(prefix, dir) }))
    // Longest prefix first, so "/vendor/" wins over "/".
    .sort((a, b) => b.prefix.length - a.prefix.length);

  const send = (res: ServerResponse, status: number, text: string, headers: Record<string, string>): void => {
    res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };

  return {
    handle(req, res, headers) {
      const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
      const mount = list.find((m) => rawPath.startsWith(m.prefix) || `${rawPath}/` === m.prefix);
      if (mount === undefined) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { ...headers, Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('Only GET and HEAD are served here.\n');
        return true;
      }
      if (!rawPath.startsWith(mount.prefix)) {
        // "/ui" for the mount "/ui/": relative links in its index only work from "/ui/".
        res.writeHead(301, { ...headers, Location: mount.prefix, 'Content-Length': 0 });
        res.end();
        return true;
      }
      const segments = safeSegments(rawPath.slice(mount.prefix.length));
      if (segments === undefined) {
        send(res, 400, 'Bad path.\n', headers);
        return true;
      }
      const relative = segments.join('/');
      const wanted = relative === '' || relative.endsWith('/') ? `${relative}index.html` : relative;
      let file: string;
      try {
        file = realpathSync(join(mount.root, ...wanted.split('/')));
        if (!file.startsWith(mount.root + sep) || !statSync(file).isFile()) throw new Error('not a file inside the mount');
      } catch {
        send(res, 404, 'Not found.\n', headers);
        return true;
      }
      const size = statSync(file).size;
      const isIndex = wanted.endsWith('index.html');
      res.writeHead(200, {
        ...headers,
        'Content-Type': mimeType(file),
        'Content-Length': size,
        'Cache-Control': isIndex ? 'no-store' : 'no-cache',
      });
      if (req.method === 'HEAD') {
        res.end();
        return true;
      }
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
      return true;
    },
  };
}
