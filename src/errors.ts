// The error catalog: every error tributary reports to a user, a client or a
// log line has a stable code from this table. Codes never change meaning once
// released; the README's error table is checked against this file by a test.
// A refused MQTT publish carries the code in its MQTT 5 reason string; MQTT
// 3.1.1 clients are disconnected instead, all that protocol allows [MQTT-3.3.5-2].

export interface ErrorSpec {
  readonly message: string
  readonly retriable: boolean
}

export const errorCodes = {
  TRIB_CONFIG_INVALID: {
    message: 'The configuration is invalid; fix the listed fields and start again',
    retriable: false,
  },
  TRIB_CONFIG_UNREADABLE: {
    message: 'The configuration file cannot be read or parsed as YAML',
    retriable: false,
  },
  TRIB_DATA_DIR_UNUSABLE: {
    message: 'The data directory cannot be created or written; check the path and its permissions',
    retriable: false,
  },
  TRIB_DATA_DIR_LOCKED: {
    message: 'Another tributary process is using this data directory; stop it or choose another --data-dir',
    retriable: false,
  },
  TRIB_STORE_DAMAGED: {
    message: 'The LMDB environment could not be opened; it was moved aside and a new one started',
    retriable: false,
  },
  TRIB_STORE_CLOSED: {
    message: 'The log store is closed or closing; the record was not stored',
    retriable: true,
  },
  TRIB_STORE_WRITE_FAILED: {
    message: 'The log store could not commit the write (disk full or I/O error); the record was not stored',
    retriable: true,
  },
  TRIB_DISK_FULL: {
    message:
      'The data disk is above limits.diskHighWaterPercent and the stream refuses new records (onFull: reject); retry later',
    retriable: true,
  },
  TRIB_APPEND_QUEUE_FULL: {
    message: 'Too many appends are waiting for the disk; the record was not stored, retry later',
    retriable: true,
  },
  TRIB_PAYLOAD_TOO_LARGE: {
    message: 'The payload is larger than limits.maxPayloadBytes; the record was not stored',
    retriable: false,
  },
  TRIB_TOPIC_INVALID: {
    message: 'The topic name is not valid for PUBLISH (empty, wildcard, NUL or reserved $ prefix)',
    retriable: false,
  },
  TRIB_CLIENT_ID_REQUIRED: {
    message: 'A zero-length client id is only allowed with a clean session [MQTT-3.1.3-7]',
    retriable: false,
  },
  TRIB_MQTT_PROTOCOL: {
    message: 'The client sent a malformed MQTT packet; the connection was closed',
    retriable: false,
  },
  TRIB_STREAM_UNKNOWN: {
    message: 'No stream with this name exists; `tributary streams` lists them',
    retriable: false,
  },
  TRIB_PARTITION_UNKNOWN: {
    message: 'The stream has no partition with this number',
    retriable: false,
  },
  TRIB_OFFSET_OUT_OF_RANGE: {
    message: 'The offset is outside the partition (deleted by retention or not yet written)',
    retriable: false,
  },
  TRIB_BATCH_CORRUPT: {
    message: 'A stored batch failed its CRC32C or structure check; its records cannot be read',
    retriable: false,
  },
  TRIB_BATCH_VERSION: {
    message: 'A stored batch has a format version this build cannot read; upgrade tributary',
    retriable: false,
  },
  TRIB_SINK_UNAVAILABLE: {
    message:
      'The sink could not take the batch now (connection, timeout, overload); it is retried with backoff',
    retriable: true,
  },
  TRIB_SINK_REJECTED: {
    message:
      'The sink will never accept this record (too large or invalid); it went to the dead-letter stream',
    retriable: false,
  },
  TRIB_SINK_STUCK: {
    message:
      'The sink looked connected but did not answer in sinks[].stuckAfterMs; it was torn down and restarted',
    retriable: true,
  },
  TRIB_SINK_FENCED: {
    message:
      "Another forwarder took over this origin's transactional id at the Kafka cluster; this one stopped sending",
    retriable: true,
  },
  TRIB_LISTEN_FAILED: {
    message: 'A listener could not bind its address (port in use or not permitted)',
    retriable: false,
  },
  TRIB_NOT_READY: {
    message: 'The node is not ready (MQTT not listening, store not open, or disk above the high-water mark)',
    retriable: true,
  },
  TRIB_HTTP_UNAUTHORIZED: {
    message: 'The admin API needs the header `Authorization: Bearer <http.token>`',
    retriable: false,
  },
  TRIB_HTTP_BAD_REQUEST: {
    message: 'The request is not valid; the message names the parameter and what it must be',
    retriable: false,
  },
  TRIB_HTTP_NOT_FOUND: {
    message: 'No such admin API route; GET /v1 lists them',
    retriable: false,
  },
  TRIB_HTTP_BUSY: {
    message: 'Too many live tails are open (http.maxTailClients); close one or retry later',
    retriable: true,
  },
  TRIB_GROUP_UNKNOWN: {
    message: 'This consumer group has no committed offsets (for this stream or partition)',
    retriable: false,
  },
  TRIB_REPLICA_GAP: {
    message:
      "A replica batch does not start where this node's copy of the partition ends; it was not stored and is fetched again",
    retriable: true,
  },
  TRIB_REPLICA_DIVERGED: {
    message:
      "A replica was not a prefix of its origin's log; its tail was moved to the quarantine for inspection and copied again",
    retriable: false,
  },
  TRIB_REPAIR_REFUSED: {
    message:
      "A batch fetched back from a peer's copy to replace a quarantined one does not fill a hole of this node's log exactly; it was not stored and the gap record stands",
    retriable: false,
  },
  TRIB_TAIL_UNCONFIRMED: {
    message:
      "At start, a follower that had copied this node's log did not answer, or holds another history of it; records it holds beyond this node's log were not fetched back. The node began a new incarnation so no record identity is given twice; a diverged copy stays in that follower's quarantine",
    retriable: false,
  },
  TRIB_INCARNATION_DAMAGED: {
    message:
      '`<dataDir>/incarnation.json` could not be read; it was moved aside and the node began an incarnation past any it may have used',
    retriable: false,
  },
  TRIB_NOT_ENOUGH_REPLICAS: {
    message:
      'The stream acknowledges after replication (ack: replicated) and too few other nodes held a copy in replicatedTimeoutMs; the record is stored here but not acknowledged: the client sends it again',
    retriable: true,
  },
  TRIB_CLUSTER_SECRET_INVALID: {
    message:
      'The cluster secret file is missing, unreadable, readable by other users or shorter than 256 bits; ' +
      'fix what the detail names, or run `tributary cluster init --secret-file FILE` and copy FILE to every node',
    retriable: false,
  },
  TRIB_CLUSTER_TLS_INVALID: {
    message:
      'A cluster.tls file (certFile, keyFile, caFile) is missing or unreadable, the key is readable by other users, ' +
      "the PEM does not parse, the key is not the certificate's, or the certificate is not signed by the CA or " +
      'does not name the cluster (subjectAltName URI:tributary://<cluster name>); fix what the detail names',
    retriable: false,
  },
  TRIB_PEER_REFUSED: {
    message:
      'The peer and this node did not prove to each other that they hold the same cluster secret (or certificates ' +
      'from the same CA) for the same cluster name and protocol version; nothing was exchanged. ' +
      'Check cluster.name, cluster.secretFile or cluster.tls, and versions',
    retriable: true,
  },
  TRIB_PEER_UNREACHABLE: {
    message:
      'No connection to the peer (refused, unreachable, timed out, or the link closed); it is dialed again with backoff',
    retriable: true,
  },
  TRIB_REPLICATION_PROTOCOL: {
    message:
      'A peer sent a replication frame this node cannot read (malformed, too large or another protocol version); the connection was closed',
    retriable: false,
  },
  TRIB_INTERNAL: {
    message: 'An unexpected error; it was logged with its stack trace: please report it',
    retriable: false,
  },
  TRIB_NODE_ID_CONFLICT: {
    message:
      "Another node announces this node's id, typically a cloned SD card; replication is refused. Stop this node, " +
      'delete `<dataDir>/node-id` (and its data if it is a copy of another node) and start it again',
    retriable: false,
  },
  TRIB_CLUSTER_SECRET_EXISTS: {
    message:
      'A cluster secret file already exists there and was kept: every node needs the same file, so copy it; ' +
      '--force replaces it, and then every node needs the new one',
    retriable: false,
  },
  TRIB_NODE_UNREACHABLE: {
    message: "The running node's admin API did not answer; check http.port and that the node runs",
    retriable: true,
  },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof errorCodes

export class TributaryError extends Error {
  readonly code: ErrorCode
  readonly retriable: boolean

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    const spec: ErrorSpec = errorCodes[code]
    super(detail === undefined ? spec.message : `${spec.message}: ${detail}`, options)
    this.name = 'TributaryError'
    this.code = code
    this.retriable = spec.retriable
  }
}

export function isTributaryError(err: unknown, code?: ErrorCode): err is TributaryError {
  return err instanceof TributaryError && (code === undefined || err.code === code)
}

/** True when `code` (from a peer, a file) is one of this catalog's codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(errorCodes, code)
}
