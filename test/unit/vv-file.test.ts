import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpiceTargetError, type SpiceTarget } from '../../spice/target.js';
import { MAX_VV_FILE_BYTES, parseVvFile, readVvFile } from '../../spice/vv-file.js';

// Made-up certificate body: the parser only checks the PEM markers, the transport checks the rest.
const CA_PEM = [
  '-----BEGIN CERTIFICATE-----',
  'MIIBszCCAVmgAwIBAgIUQ2FmZWJhYmUgZmFrZSBjZXJ0aWZpY2F0ZTAKBggqhkjO',
  'PQQDAjAeMRwwGgYDVQQDDBNzcGljZS1zbWFydGNhcmQgdGVzdDAeFw0yNTAxMDEw',
  '-----END CERTIFICATE-----',
  '',
].join('\n');
const CA_ESCAPED = CA_PEM.replaceAll('\n', '\\n');

const PROXMOX_HOST = 'pvespiceproxy:67a1b2c3:101:pve1::3f1e0c9a7b5d4e2f1a0b9c8d7e6f5a4b3c2d1e0f';
const PROXMOX = [
  '[virt-viewer]',
  'secure-attention=Ctrl+Alt+Ins',
  'delete-this-file=1',
  'proxy=http://pve1.example.com:3128',
  'type=spice',
  'toggle-fullscreen=Shift+F11',
  'title=VM 101 - win11',
  `host=${PROXMOX_HOST}`,
  'password=7c0b4f0f6b3c4a2e9d1f0e8a7b6c5d4e3f2a1b0c',
  'tls-port=61000',
  'release-cursor=Ctrl+Alt+R',
  'host-subject=OU=PVE Cluster Node,O=Proxmox Virtual Environment,CN=pve1.example.com',
  `ca=${CA_ESCAPED}`,
  '',
].join('\n');

const OVIRT = [
  '[virt-viewer]',
  'type=spice',
  'host=192.168.122.10',
  'port=-1',
  'password=Zx9_kq2LmN0pQr3S',
  '# Password is valid for 120 seconds.',
  'delete-this-file=1',
  'fullscreen=0',
  'title=win10:%d - Press SHIFT+F12 to Release Cursor',
  'toggle-fullscreen=shift+f11',
  'release-cursor=shift+f12',
  'secure-attention=ctrl+alt+end',
  'tls-port=5901',
  'enable-smartcard=1',
  'enable-usb-autoshare=0',
  'usb-filter=-1,-1,-1,-1,0',
  'tls-ciphers=DEFAULT',
  'host-subject=O=example.com,CN=host1.example.com',
  `ca=${CA_ESCAPED}`,
  'secure-channels=main;inputs;cursor;playback;record;display;smartcard;usbredir;',
  'versions=rhev-win64:2.0-160;rhev-win32:2.0-160;rhel8:7.0-3',
  'newer-version-url=http://www.ovirt.org/documentation/admin-guide/virt/console-client-resources',
  '',
  '[ovirt]',
  'host=engine.example.com:443',
  'vm-guid=0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d',
  'sso-token=not\\xvalid\\escapes',
  'admin=1',
  '',
].join('\r\n');

const valid: Array<[string, string, Partial<SpiceTarget>]> = [
  ['Proxmox', PROXMOX, {
    host: PROXMOX_HOST,
    tlsPort: 61000,
    password: '7c0b4f0f6b3c4a2e9d1f0e8a7b6c5d4e3f2a1b0c',
    proxy: { url: 'http://pve1.example.com:3128', host: 'pve1.example.com', port: 3128 },
    tls: { ca: CA_PEM, hostSubject: 'OU=PVE Cluster Node,O=Proxmox Virtual Environment,CN=pve1.example.com' },
    title: 'VM 101 - win11',
  }],
  ['oVirt', OVIRT, {
    host: '192.168.122.10',
    tlsPort: 5901,
    password: 'Zx9_kq2LmN0pQr3S',
    enableSmartcard: true,
    tls: {
      ca: CA_PEM,
      hostSubject: 'O=example.com,CN=host1.example.com',
      secureChannels: ['main', 'inputs', 'cursor', 'playback', 'record', 'display', 'smartcard', 'usbredir'],
    },
  }],
  ['minimal plain', '[virt-viewer]\ntype=spice\nhost=h\nport=5900\n', { host: 'h', port: 5900 }],
  ['BOM, CRLF, blanks, comments and spacing', '\uFEFF# generated\r\n\r\n  [virt-viewer]  \r\n ; note\r\n type = spice \r\nhost =h\r\nport= 5900\r\n',
    { host: 'h', port: 5900 }],
  ['old Mac line ends', '[virt-viewer]\rtype=spice\rhost=h\rport=5900', { host: 'h', port: 5900 }],
  ['last duplicate wins', '[virt-viewer]\ntype=spice\nhost=a\nport=1\nhost=b\nport=2\n', { host: 'b', port: 2 }],
  ['group given twice merges', '[virt-viewer]\ntype=spice\n[other]\nhost=x\n[virt-viewer]\nhost=h\ntls-port=5901\n',
    { host: 'h', tlsPort: 5901 }],
  ['IPv6 host in brackets', '[virt-viewer]\ntype=SPICE\nhost=[::1]\nport=5900\n', { host: '::1', port: 5900 }],
  ['unix socket', '[virt-viewer]\ntype=spice\nunix-path=/run/libvirt/qemu/vm.sock\n', { unixPath: '/run/libvirt/qemu/vm.sock' }],
  ['key-file escapes', '[virt-viewer]\ntype=spice\nhost=h\nport=1\npassword=\\sa\\\\b\\s\ntitle=a\\tb\n',
    { password: ' a\\b ', title: 'a\tb' }],
  ['proxy without scheme or port', '[virt-viewer]\ntype=spice\nhost=h\nport=1\nproxy=squid.example\n',
    { proxy: { url: 'http://squid.example:3128', host: 'squid.example', port: 3128 } }],
  ['proxy with credentials', '[virt-viewer]\ntype=spice\nhost=h\nport=1\nproxy=http://al%40ice:p%3Ass@[::1]:8080/\n',
    { proxy: { url: 'http://[::1]:8080', host: '::1', port: 8080, username: 'al@ice', password: 'p:ss' } }],
  ['secure-channels=all, smartcard off', '[virt-viewer]\ntype=spice\nhost=h\ntls-port=1\nsecure-channels=all\nenable-smartcard=0\n',
    { tls: { secureChannels: ['all'] }, enableSmartcard: false }],
  ['empty values are absent', '[virt-viewer]\ntype=spice\nhost=h\nport=1\npassword=\ntitle=\nca=\n',
    { host: 'h', port: 1, tls: {} }],
  ['unknown keys, localized keys and other groups are ignored',
    '[virt-viewer]\ntype=spice\nhost=h\nport=1\nzoom-in=ctrl+plus\ntitle[fr]=Bonjour\nfuture-key=\\q\n[ovirt]\nnonsense=\\\n',
    { host: 'h', port: 1 }],
];

describe('parseVvFile: accepted files', () => {
  it.each(valid)('%s', (_name, text, expected) => {
    expect(parseVvFile(text)).toMatchObject({ ...expected, source: 'vv' });
  });

  it('builds exactly the expected Proxmox target', () => {
    expect(parseVvFile(PROXMOX)).toEqual({ ...valid[0]?.[2], source: 'vv' });
  });

  it('takes bytes as well as text', () => {
    expect(parseVvFile(new TextEncoder().encode(OVIRT)).tlsPort).toBe(5901);
  });

  it('uses SPICE_PROXY when the file has no proxy, and an empty proxy= overrides it', () => {
    const env = { SPICE_PROXY: 'http://envproxy:3129' };
    const base = '[virt-viewer]\ntype=spice\nhost=h\nport=1\n';
    expect(parseVvFile(base, { env }).proxy).toEqual({ url: 'http://envproxy:3129', host: 'envproxy', port: 3129 });
    expect(parseVvFile(`${base}proxy=http://file:3128\n`, { env }).proxy?.host).toBe('file');
    expect(parseVvFile(`${base}proxy=\n`, { env }).proxy).toBeUndefined();
    expect(parseVvFile(base).proxy).toBeUndefined();
    expect(() => parseVvFile(base, { env: { SPICE_PROXY: 'socks5://x' } }))
      .toThrow(/^SPICE_PROXY environment variable: only http:\/\/ proxies are supported, not socks5:\/\//);
  });
});

const invalid: Array<[string, string, RegExp]> = [
  ['empty file', '', /not a virt-viewer connection file: the \[virt-viewer\] group is missing/],
  ['only another group', '[ovirt]\nhost=h\n', /\[virt-viewer\] group is missing/],
  ['key outside a group', 'type=spice\n[virt-viewer]\n', /^line 1: key "type" comes before any \[group\] header/],
  ['missing type', '[virt-viewer]\nhost=h\nport=1\n', /type= is missing/],
  ['VNC file', '[virt-viewer]\ntype=vnc\nhost=h\nport=5900\n', /^line 2: this is a VNC connection file \(type=vnc\), not a SPICE connection/],
  ['oVirt API file', '[virt-viewer]\ntype=ovirt\n', /type=ovirt files need an oVirt login/],
  ['unknown type', '[virt-viewer]\ntype=rdp\n', /unknown type=rdp/],
  ['no host', '[virt-viewer]\ntype=spice\nport=5900\n', /host= is missing/],
  ['no port', '[virt-viewer]\ntype=spice\nhost=h\nport=-1\n', /neither port= nor tls-port= gives a port/],
  ['bad port', '[virt-viewer]\ntype=spice\nhost=h\nport=59o0\n', /^line 4: port=59o0 is not a valid port/],
  ['port too large', '[virt-viewer]\ntype=spice\nhost=h\ntls-port=70000\n', /^line 4: tls-port=70000 is not a valid port/],
  ['bad group header', '[virt-viewer\ntype=spice\n', /^line 1: malformed group header/],
  ['garbage line', '[virt-viewer]\ntype=spice\nthis is not a key\n', /^line 3: expected KEY=VALUE/],
  ['empty key', '[virt-viewer]\n=spice\n', /^line 2: "" is not a valid key name/],
  ['bad escape', '[virt-viewer]\ntype=spice\nhost=h\nport=1\npassword=a\\qb\n', /^line 5: password= contains the invalid escape "\\q"/],
  ['trailing backslash', '[virt-viewer]\ntype=spice\nhost=h\nport=1\ntitle=x\\\n', /^line 5: title= ends with a lone backslash/],
  ['long password', `[virt-viewer]\ntype=spice\nhost=h\nport=1\npassword=${'p'.repeat(61)}\n`, /^line 5: the password is 61 bytes long/],
  ['bad boolean', '[virt-viewer]\ntype=spice\nhost=h\nport=1\nenable-smartcard=yes\n', /^line 5: enable-smartcard=yes is not a valid value; use 1 or 0/],
  ['bad delete flag', '[virt-viewer]\ntype=spice\nhost=h\nport=1\ndelete-this-file=2\n', /^line 5: delete-this-file=2/],
  ['https proxy', '[virt-viewer]\ntype=spice\nhost=h\nport=1\nproxy=https://p\n', /^line 5: proxy=: only http:\/\/ proxies are supported/],
  ['proxy with path', '[virt-viewer]\ntype=spice\nhost=h\nport=1\nproxy=http://p:3128/x\n', /^line 5: proxy=: a proxy address has no path/],
  ['proxy bad port', '[virt-viewer]\ntype=spice\nhost=h\nport=1\nproxy=http://p:0\n', /^line 5: proxy=: "0" is not a valid port/],
  ['ca not PEM', '[virt-viewer]\ntype=spice\nhost=h\ntls-port=1\nca=hello\n', /^line 5: ca= holds no PEM certificate/],
  ['bad host-subject', '[virt-viewer]\ntype=spice\nhost=h\ntls-port=1\nhost-subject=pve1\n', /^line 5: host-subject= must look like/],
  ['unknown secure channel', '[virt-viewer]\ntype=spice\nhost=h\ntls-port=1\nsecure-channels=main,inputs\n',
    /^line 5: secure-channels= names an unknown channel "main,inputs"/],
  ['host with space', '[virt-viewer]\ntype=spice\nhost=a b\nport=1\n', /^line 3: host=a b is not a valid host name/],
  ['relative unix path', '[virt-viewer]\ntype=spice\nunix-path=vm.sock\n', /unix-path= must be an absolute path/],
  ['NUL byte', '[virt-viewer]\ntype=spice\0\n', /^line 2: contains a NUL character/],
  ['first error wins', '[virt-viewer]\nbad line\nworse line\n', /^line 2: /],
];

describe('parseVvFile: rejected files', () => {
  it.each(invalid)('%s', (_name, text, message) => {
    let caught: unknown;
    try {
      parseVvFile(text);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SpiceTargetError);
    expect((caught as SpiceTargetError).message).toMatch(message);
  });

  it('reports the line number as a property', () => {
    try {
      parseVvFile('[virt-viewer]\ntype=spice\nhost=h\nport=x\n');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(SpiceTargetError);
      expect((error as SpiceTargetError).line).toBe(4);
    }
  });

  it('rejects invalid UTF-8 bytes', () => {
    const bytes = Uint8Array.from([...new TextEncoder().encode('[virt-viewer]\ntype=spice\ntitle='), 0xff, 0xfe, 0x0a]);
    expect(() => parseVvFile(bytes)).toThrow(/not UTF-8/);
  });

  it('refuses input over the size limit without scanning it', () => {
    const big = `[virt-viewer]\ntype=spice\n#${'x'.repeat(MAX_VV_FILE_BYTES)}\n`;
    expect(() => parseVvFile(big)).toThrow(/larger than 1048576 bytes/);
    expect(() => parseVvFile(new Uint8Array(MAX_VV_FILE_BYTES + 1))).toThrow(/larger than/);
  });

  it('never puts the password in an error message', () => {
    const text = '[virt-viewer]\ntype=spice\nhost=h\nport=1\npassword=Secret\\x\n';
    expect(() => parseVvFile(text)).toThrow(SpiceTargetError);
    try {
      parseVvFile(text);
    } catch (error) {
      expect(String(error)).not.toContain('Secret');
    }
  });
});

describe('parseVvFile: random input', () => {
  const pieces = ['[virt-viewer]', '[ovirt]', '[', ']', '\n', '\r\n', '\r', '=', 'type', 'spice', 'vnc', 'host', 'port',
    'tls-port', '-1', '5900', '99999', 'password', 'proxy', 'http://', 'https://', '@', ':', 'ca', '\\n', '\\', '\\s',
    'secure-channels', 'main;', 'enable-smartcard', '1', 'delete-this-file', 'unix-path', '/', '#', ';', ' ', '\0', '\uFEFF',
    '\uD800', 'é', 'host-subject', 'CN=x', '%', '%4'];

  it('throws nothing but SpiceTargetError, quickly', () => {
    let seed = 987654321;
    const next = (limit: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % limit;
    };
    const started = Date.now();
    let accepted = 0;
    for (let round = 0; round < 20000; round++) {
      let text = round % 2 === 0 ? '[virt-viewer]\ntype=spice\nhost=h\nport=5900\n' : '';
      const parts = next(40);
      for (let i = 0; i < parts; i++) {
        // Every other round builds whole KEY=VALUE lines so that the later stages get exercised too.
        text += round % 4 === 0 ? `${pieces[next(pieces.length)]}=${pieces[next(pieces.length)]}\n` : pieces[next(pieces.length)];
      }
      try {
        parseVvFile(text, { env: { SPICE_PROXY: round % 3 === 0 ? 'http://p' : '%%' } });
        accepted++;
      } catch (error) {
        if (!(error instanceof SpiceTargetError)) throw new Error(`unexpected ${String(error)} for ${JSON.stringify(text)}`);
      }
    }
    expect(accepted).toBeGreaterThan(100);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('readVvFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vv-file-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('deletes the file when it asks to', async () => {
    const path = join(dir, 'proxmox.vv');
    await writeFile(path, PROXMOX);
    const result = await readVvFile(path, { env: {} });
    expect(result.deleted).toBe(true);
    expect(result.target.tlsPort).toBe(61000);
    expect(existsSync(path)).toBe(false);
  });

  it('keeps the file otherwise', async () => {
    const path = join(dir, 'keep.vv');
    await writeFile(path, '[virt-viewer]\ntype=spice\nhost=h\nport=1\ndelete-this-file=0\n');
    const result = await readVvFile(path);
    expect(result.deleted).toBe(false);
    expect(existsSync(path)).toBe(true);
  });

  it('deletes an invalid file that asked for it, and says so', async () => {
    const path = join(dir, 'broken.vv');
    await writeFile(path, '[virt-viewer]\ndelete-this-file=1\ntype=spice\nhost=h\nport=oops\n');
    await expect(readVvFile(path)).rejects.toThrow(
      /broken\.vv: line 5: port=oops is not a valid port.*the file has been deleted/,
    );
    expect(existsSync(path)).toBe(false);
  });

  it('honours delete-this-file even when a syntax error comes first', async () => {
    const path = join(dir, 'syntax.vv');
    await writeFile(path, '[virt-viewer]\nnot a key\ndelete-this-file=1\n');
    await expect(readVvFile(path)).rejects.toThrow(/line 2: expected KEY=VALUE.*deleted/);
    expect(existsSync(path)).toBe(false);
  });

  it('does not delete a file that is not a .vv file at all', async () => {
    const path = join(dir, 'other.vv');
    await writeFile(path, '[ovirt]\ndelete-this-file=1\n');
    await expect(readVvFile(path)).rejects.toThrow(/group is missing/);
    expect(existsSync(path)).toBe(true);
  });

  it('reports missing files, directories and huge files as SpiceTargetError', async () => {
    await expect(readVvFile(join(dir, 'absent.vv'))).rejects.toThrow(SpiceTargetError);
    await expect(readVvFile(join(dir, 'absent.vv'))).rejects.toThrow(/absent\.vv: cannot open the file: ENOENT/);
    await expect(readVvFile(dir)).rejects.toThrow(/not a regular file/);
    const fifo = join(dir, 'fifo.vv');
    execFileSync('mkfifo', [fifo]);
    await expect(readVvFile(fifo)).rejects.toThrow(/fifo\.vv: not a regular file/);
    const huge = join(dir, 'huge.vv');
    await writeFile(huge, Buffer.alloc(MAX_VV_FILE_BYTES + 1, 0x23));
    await expect(readVvFile(huge)).rejects.toThrow(/larger than/);
  });
});
