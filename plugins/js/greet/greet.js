// `greet`, a flowhost step plugin in JavaScript (world `step-plugin`), built with
// componentize-js. It exists to prove that a component made by componentize-js runs on the
// host: it uses the `config`, `log` and `cache` imports and both kinds of result. Build it by
// hand with `npm ci && npm run build:greet` (writes target/greet.wasm).
//
// | step    | context       | returns                                             |
// |---------|---------------|-----------------------------------------------------|
// | `greet` | `{"name": s}` | `{"message": "<greeting>, <name>", "runtime": "js"}` |
// | other   |               | `step-error.fatal("unknown step ...")`              |
//
// `greeting` comes from the plugin's configuration (`hello` when unset); the name is also
// stored in the cache under `js:last`. `compensate` returns `{}`.
//
// Bindings follow jco's conventions: an exported interface is an object named after it in
// camelCase, a `result` error is thrown (`{tag, val}` for a variant), an `option` is
// `undefined` or the value, an enum is its case name, `list<u8>` a `Uint8Array`.

import * as cache from 'flowhost:plugin/cache@0.1.0';
import * as config from 'flowhost:plugin/config@0.1.0';
import { log } from 'flowhost:plugin/log@0.1.0';

function fatal(message) {
  return { tag: 'fatal', val: message };
}

function greet(ctx) {
  let name;
  try {
    name = JSON.parse(ctx).name;
  } catch (error) {
    throw fatal(`bad context, want {"name": ...}: ${error}`);
  }
  if (name === undefined || name === null) {
    throw fatal('bad context, want {"name": ...}: no `name`');
  }
  name = String(name);
  const greeting = config.get('greeting') ?? 'hello';
  log('info', `greeting ${name} from js`);
  try {
    cache.set('js:last', new TextEncoder().encode(name), undefined);
  } catch (error) {
    throw fatal(`the cache refused js:last: ${JSON.stringify(error.payload ?? error)}`);
  }
  return JSON.stringify({ message: `${greeting}, ${name}`, runtime: 'js' });
}

export const sagaStep = {
  execute(info, ctx) {
    if (info.step !== 'greet') {
      throw fatal(`unknown step \`${info.step}\``);
    }
    return greet(ctx);
  },

  compensate(_info, _ctx) {
    return '{}';
  },
};
