// The one function the viewer needs from fast-png, as window.FastPng.decode (a 16-bit greyscale PNG
// decodes to {width, height, depth: 16, channels: 1, data: Uint16Array}).
import { decode } from "fast-png";

window.FastPng = { decode: decode, version: "fast-png 8.0.0" };
