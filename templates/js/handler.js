// `{{name}}`: a flowhost event handler. It logs each event it is given and refuses one
// whose data is not a JSON object; a refused event is retried and then dead-lettered.
//
// Delivery is at least once: the same event id may come again, and should count as done.

import { handler, log } from '../sdk/index.js';

export const eventHandler = handler((event) => {
  if (event.data === null || typeof event.data !== 'object' || Array.isArray(event.data)) {
    throw new Error(`event ${event.id} has no object as its data`);
  }
  log.info(`${event.topic} ${event.id}: ${JSON.stringify(event.data)}`);
});
