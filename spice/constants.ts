// SPICE protocol numbers used by this client (spice-protocol enums.h / protocol.h, protocol 2.2).
// Everything on the SPICE wire is little-endian.

export const SPICE_MAGIC = 0x51444552; // "REDQ" read as a little-endian u32
export const SPICE_MAGIC_BYTES = Uint8Array.of(0x52, 0x45, 0x44, 0x51);
export const SPICE_VERSION_MAJOR = 2;
export const SPICE_VERSION_MINOR = 2;

export const LINK_HEADER_SIZE = 16;
export const LINK_MESS_SIZE = 18;
export const LINK_REPLY_SIZE = 178;
export const LINK_PUBKEY_SIZE = 162;
export const TICKET_SIZE = 128;
export const MAX_PASSWORD_LENGTH = 60;
export const MINI_HEADER_SIZE = 6;
export const FULL_HEADER_SIZE = 18;

export const ChannelType = {
  MAIN: 1,
  DISPLAY: 2,
  INPUTS: 3,
  CURSOR: 4,
  PLAYBACK: 5,
  RECORD: 6,
  TUNNEL: 7,
  SMARTCARD: 8,
  USBREDIR: 9,
  PORT: 10,
  WEBDAV: 11,
} as const;
export type ChannelTypeNumber = number;

const CHANNEL_NAMES: ReadonlyMap<number, string> = new Map([
  [1, 'main'],
  [2, 'display'],
  [3, 'inputs'],
  [4, 'cursor'],
  [5, 'playback'],
  [6, 'record'],
  [7, 'tunnel'],
  [8, 'smartcard'],
  [9, 'usbredir'],
  [10, 'port'],
  [11, 'webdav'],
]);

export function channelName(type: number): string {
  return CHANNEL_NAMES.get(type) ?? `unknown-${type}`;
}

export function channelTypeByName(name: string): number | undefined {
  for (const [type, n] of CHANNEL_NAMES) if (n === name) return type;
  return undefined;
}

// Common capabilities (bit numbers).
export const CommonCap = {
  PROTOCOL_AUTH_SELECTION: 0,
  AUTH_SPICE: 1,
  AUTH_SASL: 2,
  MINI_HEADER: 3,
} as const;

// Main channel capabilities (bit numbers). We never advertise the migration ones.
export const MainCap = {
  SEMI_SEAMLESS_MIGRATE: 0,
  NAME_AND_UUID: 1,
  AGENT_CONNECTED_TOKENS: 2,
  SEAMLESS_MIGRATE: 3,
} as const;

export const AUTH_MECHANISM_SPICE = 1;

export const LinkError = {
  OK: 0,
  ERROR: 1,
  INVALID_MAGIC: 2,
  INVALID_DATA: 3,
  VERSION_MISMATCH: 4,
  NEED_SECURED: 5,
  NEED_UNSECURED: 6,
  PERMISSION_DENIED: 7,
  BAD_CONNECTION_ID: 8,
  CHANNEL_NOT_AVAILABLE: 9,
} as const;

const LINK_ERROR_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(LinkError).map(([name, n]) => [n, name]),
);

export function linkErrorName(code: number): string {
  return LINK_ERROR_NAMES.get(code) ?? `UNKNOWN_${code}`;
}

// Messages valid on every channel.
export const BaseMsg = {
  MIGRATE: 1,
  MIGRATE_DATA: 2,
  SET_ACK: 3,
  PING: 4,
  WAIT_FOR_CHANNELS: 5,
  DISCONNECTING: 6,
  NOTIFY: 7,
  LIST: 8,
} as const;

export const BaseMsgc = {
  ACK_SYNC: 1,
  ACK: 2,
  PONG: 3,
  // 4 MIGRATE_FLUSH_MARK must never be sent unsolicited: spice-server aborts QEMU.
  DISCONNECTING: 6,
} as const;

export const MainMsg = {
  MIGRATE_BEGIN: 101,
  MIGRATE_CANCEL: 102,
  INIT: 103,
  CHANNELS_LIST: 104,
  MOUSE_MODE: 105,
  MULTI_MEDIA_TIME: 106,
  AGENT_CONNECTED: 107,
  AGENT_DISCONNECTED: 108,
  AGENT_DATA: 109,
  AGENT_TOKEN: 110,
  MIGRATE_SWITCH_HOST: 111,
  MIGRATE_END: 112,
  NAME: 113,
  UUID: 114,
  AGENT_CONNECTED_TOKENS: 115,
  MIGRATE_BEGIN_SEAMLESS: 116,
} as const;

export const MainMsgc = {
  // 101 CLIENT_INFO must never be sent: the server drops the whole session.
  MIGRATE_CONNECT_ERROR: 103,
  ATTACH_CHANNELS: 104,
} as const;

export const SmartcardMsg = {
  DATA: 101,
} as const;

export const SmartcardMsgc = {
  DATA: 101,
} as const;

export const NotifySeverity = ['info', 'warning', 'error'] as const;
