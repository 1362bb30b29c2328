import assert from "node:assert/strict";
import { makeBook } from "../testing/books.ts";
import { TextIndex } from "../book/text_index.ts";
import { postBook, receiveBook } from "./worker_messages.ts";

Deno.test("a posted book carries its attached substring index, and the receiver attaches it", () => {
  const bare = makeBook();
  assert.equal(postBook(bare).textIndex, undefined);
  assert.equal(TextIndex.attachedTo(receiveBook(postBook(bare))), undefined);

  const book = makeBook();
  const index = TextIndex.of(book);
  const posted = structuredClone(postBook(book));
  // Shared buffers: the receiver's index is the sender's memory, not a copy.
  assert.ok(posted.textIndex!.postings.buffer instanceof SharedArrayBuffer);
  const received = receiveBook(posted);
  assert.equal(received.size, book.size);
  const attached = TextIndex.attachedTo(received);
  assert.ok(attached !== undefined);
  assert.equal(TextIndex.of(received), attached);
  assert.deepEqual(attached.toShared().keys, index.toShared().keys);
});
