// add-header: adds `x-wisp-filter: <value>` to every request. Config: the value as plain
// text, or JSON {"name": "x-wisp-filter", "value": "1"}; empty config means value "1".
// Name and value are UTF-8 encoded once at configure time, so a request costs one hostcall
// and no allocation.
export * from "../../sdk-as/assembly/exports";
import {
  FilterHeadersStatus, HttpContext, MapType, RootContext, addHeaderMapValueBytes, logError,
  parseJson, registerRootContext, utf8Bytes,
} from "../../sdk-as/assembly/index";

class AddHeaderRoot extends RootContext {
  name: ArrayBuffer = utf8Bytes("x-wisp-filter");
  value: ArrayBuffer = utf8Bytes("1");

  onConfigure(configSize: u32): bool {
    this.skipResponsePhases(); // a request header only
    const text = this.getPluginConfig().trim();
    if (text.length == 0) return true;
    if (!text.startsWith("{") && !text.startsWith("\"")) {
      this.value = utf8Bytes(text);
      return true;
    }
    const parsed = parseJson(text);
    const cfg = parsed.value;
    if (cfg === null) {
      logError("add-header: config is not valid JSON: " + parsed.error);
      return false;
    }
    if (cfg.isString) {
      this.value = utf8Bytes(cfg.stringValue);
      return true;
    }
    if (!cfg.isObject) {
      logError("add-header: config must be a string or {\"name\", \"value\"}, got " + cfg.kindName);
      return false;
    }
    const name = cfg.get("name");
    if (name !== null) {
      if (!name.isString || name.stringValue.length == 0) {
        logError("add-header: config.name must be a non-empty string");
        return false;
      }
      this.name = utf8Bytes(name.stringValue.toLowerCase());
    }
    const value = cfg.get("value");
    if (value !== null) {
      if (!value.isString) {
        logError("add-header: config.value must be a string");
        return false;
      }
      this.value = utf8Bytes(value.stringValue);
    }
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new AddHeaderHttp(id, this);
  }
}

class AddHeaderHttp extends HttpContext {
  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<AddHeaderRoot>(this.root);
    addHeaderMapValueBytes(MapType.HttpRequestHeaders, root.name, root.value);
    return FilterHeadersStatus.Continue;
  }
}

registerRootContext((id: u32): RootContext => new AddHeaderRoot(id), "add-header");
