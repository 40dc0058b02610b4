/** Errors that end a command with a specific exit code (see docs/ENGINE.md). */
export class EngineError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = new.target.name;
  }
}

/** params.yaml, --set or the schema is wrong: nothing ran (exit 2). */
export class ParamsError extends EngineError {
  constructor(message: string, readonly problems: string[] = []) {
    super(message, 2);
  }
}

/** Bad command line or bad stage declarations (exit 2). */
export class UsageError extends EngineError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** Another live pipeline run holds the store lock (exit 3). */
export class LockHeldError extends EngineError {
  constructor(message: string) {
    super(message, 3);
  }
}

/** A remote cache object whose content does not match its hash (reported, never used). */
export class CorruptRemoteObject extends Error {}
