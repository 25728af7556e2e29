// Where a card document is kept: a file (written atomically, mode 0600) or memory (the demo
// card and tests). The vault saves through this after every counter or secret change.

import { readFile } from 'node:fs/promises';
import { writeFileAtomic, type AtomicWriteOptions } from './atomic-write.js';
import { CardFileError, parseCardDocument, serializeCardDocument, type CardDocument } from './card-file.js';

export interface CardDocumentStore {
  /** Durable when it resolves; on rejection the previous document is still what is stored. */
  save(document: CardDocument): Promise<void>;
}

export const CARD_FILE_MODE = 0o600;

export class CardFileStore implements CardDocumentStore {
  readonly path: string;
  readonly #writeOptions: AtomicWriteOptions;

  constructor(path: string, writeOptions: AtomicWriteOptions = {}) {
    this.path = path;
    this.#writeOptions = { ...writeOptions, mode: CARD_FILE_MODE };
  }

  save(document: CardDocument): Promise<void> {
    return writeFileAtomic(this.path, serializeCardDocument(document), this.#writeOptions);
  }
}

/** Keeps the last saved document as text, exactly as a file would hold it. Nothing touches the disk. */
export class MemoryCardStore implements CardDocumentStore {
  #text: string | undefined;

  get text(): string | undefined {
    return this.#text;
  }

  save(document: CardDocument): Promise<void> {
    this.#text = serializeCardDocument(document);
    return Promise.resolve();
  }
}

export async function readCardFile(path: string): Promise<CardDocument> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CardFileError(code === 'ENOENT' ? `no card file at ${path}` : `cannot read the card file ${path} (${code ?? 'error'})`, { cause: error });
  }
  try {
    return parseCardDocument(text);
  } catch (error) {
    if (error instanceof CardFileError) throw new CardFileError(`${path}: ${error.message}`, { cause: error });
    throw error;
  }
}
