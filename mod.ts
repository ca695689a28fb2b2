/**
 * vico: a distributed batch job runner. A manager serves a list of jobs over
 * TCP; runners on compute nodes pull them, run them as subprocesses and send
 * back exit status and output.
 *
 * This module is the library behind the `manager` and `runner` commands:
 *
 * - **Wire protocols** (pure, no I/O): {@linkcode BufferedReader}, the text
 *   codec ({@linkcode parseRunnerLine}, {@linkcode parseManagerLine}, …), the
 *   binary codec ({@linkcode readToNode}, {@linkcode readFromNode},
 *   {@linkcode encodeToNode}, {@linkcode encodeFromNode}) and the message
 *   types.
 * - **Manager**: {@linkcode Manager} ties together the job list
 *   ({@linkcode parseJobList}), the {@linkcode JobQueue}, the
 *   {@linkcode Scheduler}, the {@linkcode ResultsStore} and one session per
 *   connection: {@linkcode ManagerTextSession} for text runners,
 *   {@linkcode OwnerSession} for binary nodes.
 * - **Security**: {@linkcode SharedSecret} (the HMAC-SHA-256 challenge and
 *   response both sides run in the vico extension, via {@linkcode sayHello}
 *   on the runner's side), join tokens ({@linkcode formatJoinToken},
 *   {@linkcode parseJoinToken}), TLS ({@linkcode listenTls},
 *   {@linkcode tlsConnector} with a CA or a pinned fingerprint) and
 *   enrollment ({@linkcode enroll}). See docs/security.md.
 * - **Runner**: {@linkcode Runner} ties together a
 *   {@linkcode RunnerTextClient} (or N {@linkcode NodeSession}s for the binary
 *   protocol, each in a {@linkcode TaskDir}) and the process runner
 *   ({@linkcode runProcess}).
 *
 * @example Run a job list on this machine with two local workers
 * ```ts ignore
 * import { localRunners, Manager, parseJobList } from "./mod.ts";
 *
 * const jobs = parseJobList(new TextEncoder().encode("echo one\necho two\n"));
 * const manager = await Manager.start({ jobs, resultsDir: "results", port: 0, local: 2, localWorkers: localRunners });
 * const summary = await manager.finished;
 * console.log(`${summary.succeeded} of ${summary.jobs} succeeded`);
 * ```
 *
 * @module
 */

// Wire protocols: pure codecs and the one buffered reader.
export {
  BufferedReader,
  type BufferedReaderOptions,
  type ByteSource,
  type ChunkSink,
} from "./protocol/buffered_reader.ts";
export {
  describeBytes,
  JobListError,
  JournalDamagedError,
  ProtocolError,
  VicoError,
  type VicoErrorCode,
} from "./core/errors.ts";
export { DEFAULT_LIMITS, type Limits, SIXTEEN_GIB } from "./core/limits.ts";
export {
  DEFAULT_PORT,
  type FromRunnerText,
  type RunnerExpectation,
  TEXT_PROTOCOL_VERSION,
  TextKeyword,
  type ToRunnerText,
} from "./protocol/messages.ts";
export {
  BINARY_PROTOCOL_VERSION,
  type BinaryState,
  FrameType,
  type FromNode,
  MISSING_FILE_LENGTH,
  NO_MORE_TASKS,
  NodeStatus,
  type NodeStatusValue,
  type ToNode,
} from "./protocol/messages.ts";
export {
  encodeFromNode,
  encodeToNode,
  type FrameLimits,
  isAcceptedBinaryVersion,
  MAX_FRAME_PAYLOAD,
  readFromNode,
  readToNode,
} from "./protocol/binary_codec.ts";
export { whyBadTaskPath } from "./protocol/task_path.ts";
export {
  type ClientHello,
  EXTENSION_FIRST_BYTE,
  formatClientHello,
  formatClientProof,
  formatServerHello,
  parseClientHello,
  parseClientProof,
  parseServerHello,
  PULSE_LINE,
  type ServerHello,
} from "./protocol/vico_extension.ts";
export { isHex64, MIN_SECRET_BYTES, newNonce, NONCE_BYTES, type ProofSide, SharedSecret } from "./protocol/auth.ts";
export { formatJoinToken, JOIN_TOKEN_PREFIX, type JoinToken, parseJoinToken } from "./protocol/join_token.ts";
export {
  encodeLine,
  formatManagerLine,
  formatRunnerLine,
  isAcceptedVersion,
  parseManagerLine,
  parseRunnerLine,
  whyNotCarriable,
} from "./protocol/text_codec.ts";

// Transport seam.
export type { Transport, TransportListener } from "./transport/transport.ts";
export { connectTcp, ConnTransport, listenTcp } from "./transport/conn_transport.ts";
export { certificateFingerprint, listenTls, tlsConnector, type TlsIdentity, type TlsTrust } from "./transport/tls.ts";

// Manager.
export {
  formatOf,
  identityOf,
  type JobClass,
  type JobList,
  parseJobList,
  type ParseJobListOptions,
  parseTaskList,
  PLAIN_CLASS,
  readJobList,
  taskOf,
} from "./manager/jobs/job_list.ts";
export {
  COMMAND_LOG,
  COMMAND_SCRIPT,
  commandTask,
  type InlineFile,
  type InputFile,
  type ParsedTask,
  parseTaskSpec,
  type TaskBundle,
  type TaskRun,
} from "./manager/jobs/task_bundle.ts";
export { type Delivery, ResultRecorder, type ResultRecorderOptions } from "./manager/results/result_recorder.ts";
export { planResume, type ResumePlan } from "./manager/jobs/resume.ts";
export { OwnerSession, type OwnerSessionContext, type OwnerState } from "./manager/sessions/owner_session.ts";
export { describeClass, FleetWatch } from "./manager/scheduling/fleet_watch.ts";
export { jobKey } from "./manager/jobs/job_key.ts";
export { JobQueue, JobState, type JobStateValue } from "./manager/jobs/job_queue.ts";
export { type RunnerLink, Scheduler, type SchedulerEvents } from "./manager/scheduling/scheduler.ts";
export {
  type FileRecord,
  type JobFields,
  type JobRecord,
  JOURNAL_FILE,
  type NodeRecord,
  ResultsStore,
  type ReturnedFile,
  StagedOutput,
} from "./manager/results/results_store.ts";
export { ManagerTextSession, type ManagerTextState, type TextSessionContext } from "./manager/sessions/text_session.ts";
export { Server, type ServerOptions, type SessionFactory } from "./manager/sessions/server.ts";
export { type HandshakeWindow, type Session, type SessionContext } from "./manager/sessions/session_context.ts";
export type { ExecutedJobOutcome, ExecutedJobSpec, JobOutput, JobRunner } from "./core/executed_job.ts";
export { LocalSession, type LocalSessionContext, type LocalSessionEnd } from "./manager/sessions/local_session.ts";
export {
  type LocalJobs,
  type LocalWorker,
  type LocalWorkerEnd,
  type LocalWorkerFactory,
  type LocalWorkerSpec,
  Manager,
  type ManagerOptions,
  type RunSummary,
} from "./manager/manager.ts";
export { localRunners } from "./cli/local_runners.ts";
export {
  enroll,
  type Enrollment,
  type EnrollOptions,
  makeSelfSignedIdentity,
  writeJoinToken,
} from "./manager/sessions/enrollment.ts";

// Runner.
export {
  type OutputSink,
  type ProcessOutcome,
  programArgv,
  runProcess,
  type RunProcessOptions,
  shellArgv,
  STATUS_CANNOT_START,
  STATUS_RUNNER_FAILURE,
  unsetInheritedVariables,
} from "./runner/exec/process_runner.ts";
export { OutputLimitError, outputLimitNote } from "./runner/exec/output_limit.ts";
export { type ExecutedJob, JobExecutor, type JobExecutorOptions } from "./runner/exec/job_executor.ts";
export { TaskDir, TaskPathError } from "./runner/binary/task_dir.ts";
export {
  NodeSession,
  type NodeSessionEnd,
  type NodeSessionOptions,
  type NodeState,
  STATUS_OF_STATE,
} from "./runner/binary/node_session.ts";
export { OutputSpool, type OutputSpoolOptions, SpoolFiles } from "./runner/exec/output_spool.ts";
export {
  type ConnectionEnd,
  type OpenResult,
  RunnerTextClient,
  type RunnerTextClientOptions,
  type RunnerTextState,
} from "./runner/text/text_client.ts";
export {
  defaultStateDir,
  RunnerState,
  RunnerStateError,
  type RunnerStateProblem,
  type StoredResult,
} from "./runner/service/runner_state.ts";
export { Runner, type RunnerEnd, type RunnerOptions } from "./runner/runner.ts";
export { type HelloOptions, type HelloResult, sayHello } from "./runner/connect/extension_hello.ts";
export { resolveUser, type RunAs } from "./runner/exec/run_as.ts";
