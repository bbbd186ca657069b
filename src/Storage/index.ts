/**
 * The public face of docsync's storage (re-exported as `Storage` from the package root): the `DocumentStorage`
 * service, its one error, and its Layers. Migrations, SQL helpers and row decoding stay internal.
 */
export {
  type AppendResult,
  type DocumentPage,
  DocumentStorage,
  type DocumentStorageShape,
  layerMemory,
  type ListOptions,
  type NewUpdate,
  StorageError
} from "./DocumentStorage.js"
export {
  layerPg,
  layerSqlClient,
  layerSqlite,
  type PgOptions,
  type SqlDocumentStorageOptions,
  type SqliteOptions
} from "./SqlDocumentStorage.js"
export { layerFromUrl } from "./StorageLayer.js"
