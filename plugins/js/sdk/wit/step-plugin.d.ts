/// <reference path="./interfaces/flowhost-plugin-cache.d.ts" />
/// <reference path="./interfaces/flowhost-plugin-config.d.ts" />
/// <reference path="./interfaces/flowhost-plugin-events.d.ts" />
/// <reference path="./interfaces/flowhost-plugin-log.d.ts" />
/// <reference path="./interfaces/flowhost-plugin-saga-step.d.ts" />
/// <reference path="./interfaces/flowhost-plugin-services.d.ts" />
/// <reference path="./interfaces/flowhost-plugin-types.d.ts" />
declare module 'flowhost:plugin/step-plugin@0.1.0' {
  export type * as FlowhostPluginCache010 from 'flowhost:plugin/cache@0.1.0'; // import flowhost:plugin/cache@0.1.0
  export type * as FlowhostPluginConfig010 from 'flowhost:plugin/config@0.1.0'; // import flowhost:plugin/config@0.1.0
  export type * as FlowhostPluginEvents010 from 'flowhost:plugin/events@0.1.0'; // import flowhost:plugin/events@0.1.0
  export type * as FlowhostPluginLog010 from 'flowhost:plugin/log@0.1.0'; // import flowhost:plugin/log@0.1.0
  export type * as FlowhostPluginServices010 from 'flowhost:plugin/services@0.1.0'; // import flowhost:plugin/services@0.1.0
  export type * as FlowhostPluginTypes010 from 'flowhost:plugin/types@0.1.0'; // import flowhost:plugin/types@0.1.0
  export * as sagaStep from 'flowhost:plugin/saga-step@0.1.0'; // export flowhost:plugin/saga-step@0.1.0
}
