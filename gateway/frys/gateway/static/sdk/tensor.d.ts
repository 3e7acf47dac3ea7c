/**
 * CRC-32 of `bytes`, continuing from `crc` (0 to start).
 * @param {Uint8Array} bytes
 * @param {number} [crc]
 * @returns {number}
 */
export function crc32(bytes: Uint8Array, crc?: number): number;
/**
 * The CRC of a keyframe or delta: every byte but the CRC field itself (bytes 16–19).
 * @param {Uint8Array} frame
 * @returns {number}
 */
export function frameCrc(frame: Uint8Array): number;
/**
 * Parse and structurally check a frame's header (not its CRC); throws
 * {@link TensorFrameError}.
 * @param {Uint8Array | ArrayBuffer} data
 * @returns {FrameHeader}
 */
export function readHeader(data: Uint8Array | ArrayBuffer): FrameHeader;
/**
 * Decompress a payload that must be one zstd frame declaring a content size within
 * `[low, high]` and a window of at most 8 MiB, with no bytes after it. Everything is read
 * from the zstd frame header and block headers first, so a frame over a limit is refused
 * before anything is decompressed or allocated.
 *
 * @param {Uint8Array} payload
 * @param {number} low
 * @param {number} high
 * @returns {Uint8Array} exactly the declared number of bytes
 */
export function decompressChecked(payload: Uint8Array, low: number, high: number): Uint8Array;
/**
 * Undo the byte shuffle of `laneCount` lanes of `laneSize` bytes: byte j of lane i was
 * written at j·laneCount + i.
 * @param {Uint8Array} data
 * @param {number} laneSize
 * @returns {Uint8Array}
 */
export function unshuffle(data: Uint8Array, laneSize: number): Uint8Array;
/**
 * The bits of an IEEE half as a number (exact).
 * @param {number} bits
 * @returns {number}
 */
export function halfToNumber(bits: number): number;
/**
 * Why an array of `shape` is beyond the limits, or `null`. The limits apply to the
 * extent, the product of the non-zero dimensions: a zero dimension must not let huge
 * others through (§10).
 * @param {number[]} shape
 * @param {number} itemsize
 * @param {TensorLimits} limits
 * @returns {string | null}
 */
export function shapeViolation(shape: number[], itemsize: number, limits: TensorLimits): string | null;
export const FORMAT_VERSION: 2;
export const MAGIC_VERSION: number;
export const HEADER_SIZE: 24;
export const CHUNK_HEADER_SIZE: 24;
/** zstd window a decoder accepts (2^23 bytes, §7). */
export const MAX_WINDOW_SIZE: number;
export const Kind: Readonly<{
    KEYFRAME: 1;
    DELTA: 2;
    CHUNK: 3;
}>;
export const Codec: Readonly<{
    RAW: 0;
    SHUFFLE_ZSTD: 1;
    SPARSE_BITMAP: 2;
    SPARSE_GAPS: 3;
    UNCHANGED: 4;
}>;
export const Precision: Readonly<{
    EXACT: 0;
    FLOAT16: 1;
    BFLOAT16: 2;
    QUANTIZED: 3;
}>;
/** Corrupt, truncated or invalid frame: drop it, resynchronise if a delta was lost. */
export class TensorFrameError extends Error {
    /** @param {string} message */
    constructor(message: string);
}
/** The header or the zstd frame declares more than the limits allow (checked first). */
export class TensorLimitError extends TensorFrameError {
}
/** A valid delta that does not apply to the state held: ask for a keyframe. */
export class TensorGapError extends Error {
    /**
     * @param {number | null} held sequence held (`null` before the first keyframe)
     * @param {number} base the delta's base sequence
     * @param {number | null} heldEpoch
     * @param {number} epoch the delta's epoch
     */
    constructor(held: number | null, base: number, heldEpoch: number | null, epoch: number);
    held: number | null;
    base: number;
    heldEpoch: number | null;
    epoch: number;
}
/**
 * @typedef {Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array |
 *   BigInt64Array | BigUint64Array | Float32Array | Float64Array} TypedArray
 */
/**
 * One element type (§5).
 * @typedef {object} ElementType
 * @property {number} code
 * @property {string} dtype numpy's name of it
 * @property {number} itemsize bytes of one element
 * @property {number} laneSize bytes of one lane
 * @property {number} lanes lanes per element (2 for complex)
 * @property {boolean} isFloat
 * @property {new (buffer: ArrayBuffer) => TypedArray} array the typed array of decoded values
 */
/** @type {ReadonlyMap<number, ElementType>} */
export const DTYPES: ReadonlyMap<number, ElementType>;
/**
 * Limits a decoder enforces from the header, before allocating or decompressing (§10).
 * @typedef {object} TensorLimits
 * @property {number} maxBytes largest decoded array (extent × item size)
 * @property {number} maxElements largest extent (product of the non-zero dimensions)
 * @property {number} maxNdim most dimensions
 * @property {number} maxFrameBytes largest encoded frame, header included
 */
/** @type {Readonly<TensorLimits>} */
export const DEFAULT_LIMITS: Readonly<TensorLimits>;
/**
 * Bounds on chunk reassembly (§9).
 * @typedef {object} ChunkLimits
 * @property {number} maxFrameBytes largest frame a chunk set may declare
 * @property {number} maxPendingSets most incomplete sets held
 * @property {number} maxPendingBytes most bytes the incomplete sets may declare in total
 * @property {number} timeout seconds after its first chunk an incomplete set is dropped
 */
/** @type {Readonly<ChunkLimits>} */
export const DEFAULT_CHUNK_LIMITS: Readonly<ChunkLimits>;
/**
 * A decoded tensor value.
 * @typedef {object} TensorValue
 * @property {number} stream stream id
 * @property {number} sequence
 * @property {number} epoch epoch of the encoder whose state this is
 * @property {string} dtype numpy's name of the element type
 * @property {number[]} shape
 * @property {TypedArray} data the values in C order (complex: interleaved real, imaginary)
 * @property {string} precision `EXACT`, `FLOAT16`, `BFLOAT16` or `QUANTIZED`
 * @property {number} maxAbsError bound on |decoded − published| (0 unless quantised)
 * @property {boolean} fortran whether the frames carry Fortran order (the data is C order)
 */
/**
 * @typedef {object} State
 * @property {Representation} rep
 * @property {number[]} shape
 * @property {boolean} fortran
 * @property {Uint8Array} wire wire lanes of every element, in the frames' element order
 * @property {number} count elements
 * @property {number} epoch
 * @property {number} sequence
 */
/** Applies the frames of one tensor stream and returns its current value. */
export class TensorDecoder {
    /**
     * @param {number | null} [streamId] the stream to accept; `null` adopts the first
     *   keyframe's
     * @param {Partial<TensorLimits>} [limits]
     */
    constructor(streamId?: number | null, limits?: Partial<TensorLimits>);
    /** @type {number | null} */
    streamId: number | null;
    /** @type {TensorLimits} */
    limits: TensorLimits;
    /** @type {State | null} */
    _state: State | null;
    /** Sequence of the state held, `null` before the first keyframe. */
    get sequence(): number | null;
    /** Epoch of the encoder whose state is held, `null` before the first keyframe. */
    get epoch(): number | null;
    /** Drop the state held: only a keyframe applies next. */
    reset(): void;
    /**
     * Apply `frame` and return the stream's value. Throws {@link TensorFrameError} for bad
     * bytes and {@link TensorGapError} for a delta that does not follow the state held; the
     * state is then unchanged.
     * @param {Uint8Array | ArrayBuffer} data
     * @returns {TensorValue}
     */
    feed(data: Uint8Array | ArrayBuffer): TensorValue;
    /**
     * The value held, as fresh arrays, or `null` before the first keyframe.
     * @returns {TensorValue | null}
     */
    current(): TensorValue | null;
    /**
     * Apply `frame` to the state without building the value; returns its header.
     * @param {Uint8Array | ArrayBuffer} data
     * @returns {KeyframeHeader | DeltaHeader}
     */
    apply(data: Uint8Array | ArrayBuffer): KeyframeHeader | DeltaHeader;
    /**
     * @param {Uint8Array} frame
     * @param {KeyframeHeader} header
     * @returns {State}
     */
    _keyframe(frame: Uint8Array, header: KeyframeHeader): State;
    /**
     * @param {Uint8Array} frame
     * @param {DeltaHeader} header
     */
    _delta(frame: Uint8Array, header: DeltaHeader): void;
}
/** Reassembles chunk frames into whole frames, within {@link ChunkLimits} (§9). */
export class ChunkAssembler {
    /** @param {Partial<ChunkLimits>} [limits] */
    constructor(limits?: Partial<ChunkLimits>);
    /** @type {ChunkLimits} */
    limits: ChunkLimits;
    /** @type {Map<string, {count: number, total: number, started: number, parts: Map<number, Uint8Array>}>} */
    _sets: Map<string, {
        count: number;
        total: number;
        started: number;
        parts: Map<number, Uint8Array>;
    }>;
    _declared: number;
    /** Incomplete sets dropped so far, by timeout or to make room. */
    evicted: number;
    /** Incomplete sets held. */
    get pending(): number;
    /**
     * Take one chunk frame; returns the whole frame once its last chunk arrives, else
     * `null`. Throws {@link TensorFrameError} for a malformed or oversized chunk (the sets
     * held are kept) and for a completed frame that does not carry the CRC its chunks name.
     * @param {Uint8Array | ArrayBuffer} data
     * @param {number} now seconds, from any monotonic clock
     * @returns {Uint8Array | null}
     */
    feed(data: Uint8Array | ArrayBuffer, now: number): Uint8Array | null;
    /**
     * Drop incomplete sets older than the timeout; returns how many were dropped.
     * @param {number} now seconds
     * @returns {number}
     */
    expire(now: number): number;
    /** @param {number} size */
    _makeRoom(size: number): void;
    /** @param {string} key */
    _drop(key: string): void;
}
/**
 * What feeding one message of a channel gave.
 * @typedef {{value: TensorValue} | {gap: number, error: TensorGapError} | {error: TensorFrameError, stream: number | null} | null} TensorFeed
 */
/**
 * The tensor streams of one channel: reassembly and one decoder per stream id. A gap
 * is reported (so the caller sends `resync`) instead of showing a wrong array.
 */
export class TensorChannel {
    /**
     * @param {{limits?: Partial<TensorLimits>, chunkLimits?: Partial<ChunkLimits>}} [options]
     */
    constructor(options?: {
        limits?: Partial<TensorLimits>;
        chunkLimits?: Partial<ChunkLimits>;
    });
    assembler: ChunkAssembler;
    /** @type {Map<number, TensorDecoder>} */
    decoders: Map<number, TensorDecoder>;
    _limits: Partial<TensorLimits>;
    /** Keyframes and deltas applied, gaps met, frames refused: how the stream travels. */
    keyframes: number;
    deltas: number;
    gaps: number;
    errors: number;
    /**
     * Feed one tensor frame (or chunk) of the channel.
     * @param {Uint8Array | ArrayBuffer} data
     * @param {number} now seconds, from a monotonic clock (chunk timeouts)
     * @returns {TensorFeed}
     */
    feed(data: Uint8Array | ArrayBuffer, now: number): TensorFeed;
    /**
     * The current value of a stream, or `null`.
     * @param {number} stream
     * @returns {TensorValue | null}
     */
    current(stream: number): TensorValue | null;
}
export type KeyframeHeader = {
    kind: "keyframe";
    streamId: number;
    sequence: number;
    epoch: number;
    codec: number;
    precision: number;
    fortran: boolean;
    dtypeCode: number;
    exponent: number;
    shape: number[];
    crc: number;
    payloadOffset: number;
};
export type DeltaHeader = {
    kind: "delta";
    streamId: number;
    sequence: number;
    epoch: number;
    codec: number;
    precision: number;
    base: number;
    crc: number;
    payloadOffset: number;
};
export type ChunkHeader = {
    kind: "chunk";
    streamId: number;
    sequence: number;
    index: number;
    count: number;
    frameCrc: number;
    totalLength: number;
    payloadOffset: number;
};
export type FrameHeader = KeyframeHeader | DeltaHeader | ChunkHeader;
export type Representation = {
    element: ElementType;
    precision: number;
    exponent: number;
    /**
     * bytes of one wire lane
     */
    laneSize: number;
    /**
     * bytes of one element on the wire
     */
    wireSize: number;
};
export type TypedArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array | Float32Array | Float64Array;
/**
 * One element type (§5).
 */
export type ElementType = {
    code: number;
    /**
     * numpy's name of it
     */
    dtype: string;
    /**
     * bytes of one element
     */
    itemsize: number;
    /**
     * bytes of one lane
     */
    laneSize: number;
    /**
     * lanes per element (2 for complex)
     */
    lanes: number;
    isFloat: boolean;
    /**
     * the typed array of decoded values
     */
    array: new (buffer: ArrayBuffer) => TypedArray;
};
/**
 * Limits a decoder enforces from the header, before allocating or decompressing (§10).
 */
export type TensorLimits = {
    /**
     * largest decoded array (extent × item size)
     */
    maxBytes: number;
    /**
     * largest extent (product of the non-zero dimensions)
     */
    maxElements: number;
    /**
     * most dimensions
     */
    maxNdim: number;
    /**
     * largest encoded frame, header included
     */
    maxFrameBytes: number;
};
/**
 * Bounds on chunk reassembly (§9).
 */
export type ChunkLimits = {
    /**
     * largest frame a chunk set may declare
     */
    maxFrameBytes: number;
    /**
     * most incomplete sets held
     */
    maxPendingSets: number;
    /**
     * most bytes the incomplete sets may declare in total
     */
    maxPendingBytes: number;
    /**
     * seconds after its first chunk an incomplete set is dropped
     */
    timeout: number;
};
/**
 * A decoded tensor value.
 */
export type TensorValue = {
    /**
     * stream id
     */
    stream: number;
    sequence: number;
    /**
     * epoch of the encoder whose state this is
     */
    epoch: number;
    /**
     * numpy's name of the element type
     */
    dtype: string;
    shape: number[];
    /**
     * the values in C order (complex: interleaved real, imaginary)
     */
    data: TypedArray;
    /**
     * `EXACT`, `FLOAT16`, `BFLOAT16` or `QUANTIZED`
     */
    precision: string;
    /**
     * bound on |decoded − published| (0 unless quantised)
     */
    maxAbsError: number;
    /**
     * whether the frames carry Fortran order (the data is C order)
     */
    fortran: boolean;
};
export type State = {
    rep: Representation;
    shape: number[];
    fortran: boolean;
    /**
     * wire lanes of every element, in the frames' element order
     */
    wire: Uint8Array;
    /**
     * elements
     */
    count: number;
    epoch: number;
    sequence: number;
};
/**
 * What feeding one message of a channel gave.
 */
export type TensorFeed = {
    value: TensorValue;
} | {
    gap: number;
    error: TensorGapError;
} | {
    error: TensorFrameError;
    stream: number | null;
} | null;
