/**
 * Where the client reports what it copes with on its own (a malformed frame skipped, a
 * reconnect attempt failed).
 *
 * Like the Python client, which logs to the `streamer_client` logger and so shows warnings
 * unless told otherwise, the default prints warnings and errors to the console and keeps
 * debug and info quiet. Pass `logger: console` to see everything, or your own to route it.
 */

export interface Logger {
  debug(message: string, ...details: unknown[]): void;
  info(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
}

const quiet = (): void => {};

export const defaultLogger: Logger = {
  debug: quiet,
  info: quiet,
  warn: (message, ...details) => console.warn(`[streamer] ${message}`, ...details),
  error: (message, ...details) => console.error(`[streamer] ${message}`, ...details),
};
