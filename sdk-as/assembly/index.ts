// @wisp/sdk-as — write proxy-wasm (ABI 0.2.1) filters in AssemblyScript.
// Filter entry file:
//   export * from "@wisp/sdk-as/assembly/exports";   // the ABI callbacks (one line)
//   import { RootContext, HttpContext, registerRootContext } from "@wisp/sdk-as/assembly";
// See README.md.

export * from "./types";
export * from "./context";
export * from "./metrics";
export * from "./json";
export * from "./util";
export { registerRootContext, RootFactory } from "./registry";
export { Bytes, appendAddressHost } from "./bytes";
export {
  SharedData, getSharedData, setSharedData, getProperty, getPropertyString, setProperty,
  getCurrentTimeNanoseconds, setTickPeriodMilliseconds, serializeHeaders, deserializeHeaders,
  getHeaderMapPairs, setHeaderMapPairs, getHeaderMapValue, addHeaderMapValue, replaceHeaderMapValue,
  removeHeaderMapValue, getHeaderMapValueBytes, addHeaderMapValueBytes, replaceHeaderMapValueBytes,
  removeHeaderMapValueBytes, getHeaderMapSize, getBufferBytes, setBufferBytes, sendLocalResponse,
  sendLocalResponseBytes, continueStream, closeStream, registerSharedQueue, resolveSharedQueue,
  enqueueSharedQueue, dequeueSharedQueue, httpCall, defineMetric, incrementMetric, recordMetric,
  getMetric, setEffectiveContext, getLogLevel, utf8Bytes, getPropertyInt64, getPropertyInt64Into, serializePropertyPath, getPropertyBytes,
  getHeaderMapValueInto, getPropertyInto, SharedSlot, readSharedData, writeSharedData, addHeaderMapValueOf,
  replaceHeaderMapValueOf,
} from "./hostcalls";
export { Sha256, sha256 } from "./crypto/sha256";
export { Sha512, sha512, sha384 } from "./crypto/sha512";
export { HashAlg, HmacKey, hmacSha256, hmacSha384, hmacSha512 } from "./crypto/hmac";
