// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRatings} from "./IRatings.sol";

/// @title ITaskMarket
/// @notice Escrowed marketplace for ML compute: workers (providers and validators) register, requesters post
///         tasks with a deposit of price + validator fee, every silent party has a deadline after which anyone
///         can move the money to its rightful owner, and all payouts are pull payments.
interface ITaskMarket {
    /// @notice Task lifecycle. Terminal: Completed, Closed, Cancelled, Expired.
    enum Status {
        None, // 0: no such task
        Pending, // 1: posted, no provider yet
        Executing, // 2: provider named, result due before the deadline
        AwaitingValidator, // 3: result committed, no validator named yet
        Validating, // 4: result committed, validator's verdict due before the deadline
        Accepted, // 5: validator accepted; requester finalizes (or anyone expires after the review window)
        Rejected, // 6: validator rejected; requester refunded, validator paid; finalize records the rating
        Completed, // 7: accepted and finalized: provider paid, rating recorded
        Closed, // 8: rejected and rated
        Cancelled, // 9: cancelled by the requester while Pending
        Expired // 10: a deadline passed and expire() settled the escrow
    }

    /// @notice A task as returned by getTask (stored in two slots, parties as worker ids; no hashes, no
    ///         locators: those are only in events).
    struct Task {
        address requester;
        Status status;
        uint32 deadline; // deadline of the current state (unix seconds)
        uint32 poolIndex; // position in the open-task set while the task holds escrow
        uint24 timeout; // execution timeout in seconds, applied when the provider is named
        address provider;
        uint96 price;
        address validator;
        uint96 validatorFee;
    }

    /// @notice What the requester offers when posting.
    struct Terms {
        address provider; // named now, or address(0) to leave the task in the pending pool
        address validator; // named now, or address(0) to name one after the result
        uint96 price; // wei paid to the provider on acceptance (at least the provider's asking price)
        uint96 validatorFee; // wei paid to the validator for its verdict
        uint24 timeout; // seconds the provider has once named, within [minTimeout, maxTimeout]
    }

    /// @notice A registered worker (provider or validator).
    struct Worker {
        bytes32 encKey; // X25519 public key: locators for this worker are sealed to it
        uint96 price; // asking price in wei
        uint32 poolIndex; // position in the available-worker set while available
        uint32 id; // permanent worker id (kept across leave and re-register), 0 for never registered
        bool registered;
        bool available;
    }

    // ------------------------------------------------------------------ events
    /// @notice A worker registered.
    event WorkerRegistered(address indexed worker, bytes32 encKey, uint96 price, bool available);
    /// @notice A worker changed its key, price or availability.
    event WorkerUpdated(address indexed worker, bytes32 encKey, uint96 price, bool available);
    /// @notice A worker left the registry (its open tasks carry on).
    event WorkerLeft(address indexed worker);
    /// @notice A task was posted with its escrow; locators are sealed to the named provider / validator.
    event TaskPosted(
        uint256 indexed taskId,
        address indexed provider,
        address indexed validator,
        address requester,
        bytes32 taskHash,
        uint96 price,
        uint96 validatorFee,
        uint32 deadline,
        bytes providerLocator,
        bytes validatorLocator
    );
    /// @notice The requester named the provider of a pending task.
    event ProviderAssigned(
        uint256 indexed taskId, address indexed provider, address requester, uint96 price, uint32 deadline, bytes locator
    );
    /// @notice The requester named (or replaced) the validator of a task whose result is committed.
    event ValidatorAssigned(
        uint256 indexed taskId,
        address indexed validator,
        address requester,
        bytes32 resultHash,
        uint96 validatorFee,
        uint32 deadline,
        bytes locator
    );
    /// @notice The provider committed its result; locators are sealed to the requester and the validator.
    event ResultSubmitted(
        uint256 indexed taskId,
        address indexed provider,
        address indexed validator,
        address requester,
        bytes32 resultHash,
        uint32 deadline,
        bytes requesterLocator,
        bytes validatorLocator
    );
    /// @notice The validator judged the committed result. On reject the requester was refunded the price.
    event VerdictSubmitted(
        uint256 indexed taskId,
        address indexed validator,
        address indexed requester,
        bytes32 resultHash,
        bool accepted,
        uint96 validatorFee,
        uint32 deadline
    );
    /// @notice The requester finalized and rated: `paid` wei were credited to the provider (0 after a reject).
    event TaskFinalized(
        uint256 indexed taskId, address indexed provider, address indexed requester, uint8 rating, uint96 paid
    );
    /// @notice The requester cancelled a pending task and was refunded.
    event TaskCancelled(uint256 indexed taskId, address indexed requester, uint256 refund);
    /// @notice A deadline passed and the escrow was settled: `refund` to the requester, `payout` to the provider.
    event TaskExpired(
        uint256 indexed taskId,
        address indexed requester,
        address indexed provider,
        Status previousStatus,
        uint256 refund,
        uint256 payout
    );
    /// @notice Credits were paid out.
    event Withdrawn(address indexed account, address indexed to, uint256 amount);

    // ------------------------------------------------------------------ errors
    error TaskMarket__InvalidWindows();
    error TaskMarket__AlreadyRegistered(address worker);
    error TaskMarket__NotAWorker(address account);
    error TaskMarket__ZeroKey();
    error TaskMarket__WorkerUnavailable(address worker);
    error TaskMarket__PriceTooLow(address worker, uint96 asking, uint96 offered);
    error TaskMarket__WrongDeposit(uint256 expected, uint256 sent);
    error TaskMarket__TimeoutOutOfBounds(uint256 timeout, uint256 minTimeout, uint256 maxTimeout);
    error TaskMarket__ZeroTaskHash();
    error TaskMarket__InvalidProvider(address provider);
    error TaskMarket__InvalidValidator(address validator);
    error TaskMarket__TaskNotFound(uint256 taskId);
    error TaskMarket__NotRequester(uint256 taskId, address caller);
    error TaskMarket__NotProvider(uint256 taskId, address caller);
    error TaskMarket__NotValidator(uint256 taskId, address caller);
    error TaskMarket__WrongState(uint256 taskId, Status status);
    error TaskMarket__DeadlinePassed(uint256 taskId, uint256 deadline);
    error TaskMarket__DeadlineNotReached(uint256 taskId, uint256 deadline);
    error TaskMarket__ZeroResultHash();
    error TaskMarket__WrongResult(uint256 taskId, bytes32 resultHash);
    error TaskMarket__InvalidRating(uint8 rating);
    error TaskMarket__NothingToWithdraw(address account);
    error TaskMarket__TransferFailed(address to, uint256 amount);
    error TaskMarket__Reentrancy();

    // ------------------------------------------------------------------ workers
    /// @notice Register the caller as a worker (provider and/or validator).
    /// @param encKey X25519 public key (non-zero) that locators for this worker are sealed to.
    /// @param price Asking price in wei.
    /// @param available Whether to join the available-worker pool now.
    function register(bytes32 encKey, uint96 price, bool available) external;

    /// @notice Change the caller's key, price or availability.
    /// @param encKey New X25519 public key (non-zero).
    /// @param price New asking price in wei.
    /// @param available New availability.
    function update(bytes32 encKey, uint96 price, bool available) external;

    /// @notice Leave the registry. Tasks already assigned to the caller carry on; credits stay withdrawable.
    function leave() external;

    // ------------------------------------------------------------------ task lifecycle
    /// @notice Post a task with its escrow (msg.value must equal terms.price + terms.validatorFee).
    /// @param taskHash sha256 of the packaged task (only emitted).
    /// @param terms Provider and validator (or address(0) to name later), price, validator fee and timeout.
    /// @param providerLocator Task locator sealed to the provider (only emitted).
    /// @param validatorLocator Task locator sealed to the validator (only emitted).
    /// @return taskId The new task id (ids start at 1).
    function post(
        bytes32 taskHash,
        Terms calldata terms,
        bytes calldata providerLocator,
        bytes calldata validatorLocator
    ) external payable returns (uint256 taskId);

    /// @notice Name the provider of a pending task (requester only).
    /// @param taskId The task.
    /// @param provider An available worker asking at most the task's price, not the requester nor the validator.
    /// @param locator Task locator sealed to the provider (only emitted).
    function assignProvider(uint256 taskId, address provider, bytes calldata locator) external;

    /// @notice Name the validator after the result (AwaitingValidator, before the review deadline), or replace a
    ///         silent validator (Validating, after its deadline). Requester only.
    /// @param taskId The task.
    /// @param validator An available worker, not the requester, the provider nor the current validator.
    /// @param resultHash The task's committed result (checked), so the validator learns it from the event.
    /// @param locator Task and result locator sealed to the validator (only emitted).
    function assignValidator(uint256 taskId, address validator, bytes32 resultHash, bytes calldata locator) external;

    /// @notice Commit the result of an executing task (provider only, before the deadline).
    /// @param taskId The task.
    /// @param resultHash sha256 of the packaged result; non-zero, committed once per task (the status moves on).
    ///        The commitment is bound to this task only: another task committing the same hash (a copier)
    ///        neither blocks nor affects it, and the package itself names (chain id, market, task id, provider),
    ///        so a copied hash fails the validator's off-chain check.
    /// @param requesterLocator Result locator sealed to the requester (only emitted).
    /// @param validatorLocator Task and result locator sealed to the validator, if one is named (only emitted).
    function submitResult(
        uint256 taskId,
        bytes32 resultHash,
        bytes calldata requesterLocator,
        bytes calldata validatorLocator
    ) external;

    /// @notice Judge the committed result (validator only, before the deadline). The validator is paid either way;
    ///         on reject the requester is refunded the price.
    /// @param taskId The task.
    /// @param resultHash The commitment judged; must be the task's committed result.
    /// @param accept True to accept, false to reject.
    function submitVerdict(uint256 taskId, bytes32 resultHash, bool accept) external;

    /// @notice Finalize and rate (requester only): pays the provider after an accept; only records the rating
    ///         after a reject.
    /// @param taskId The task (Accepted or Rejected).
    /// @param rating 1..5, recorded for the provider in Ratings.
    function finalize(uint256 taskId, uint8 rating) external;

    /// @notice Cancel a pending task and get the deposit back (requester only).
    /// @param taskId The task.
    function cancel(uint256 taskId) external;

    /// @notice Settle a task whose current deadline passed (anyone may call): Pending/Executing/Validating refund
    ///         the requester; AwaitingValidator/Accepted pay the provider (the unspent fee goes back).
    /// @param taskId The task.
    function expire(uint256 taskId) external;

    /// @notice Pay the caller's credits to the caller.
    /// @return amount Wei paid.
    function withdraw() external returns (uint256 amount);

    /// @notice Pay the caller's credits to `to` (for accounts that cannot receive ether themselves).
    /// @param to Recipient.
    /// @return amount Wei paid.
    function withdrawTo(address payable to) external returns (uint256 amount);

    // ------------------------------------------------------------------ views
    /// @notice The Ratings contract this market writes to.
    /// @return The Ratings contract.
    function ratings() external view returns (IRatings);

    /// @notice One task.
    /// @param taskId The task id.
    /// @return The task (status None when it does not exist).
    function getTask(uint256 taskId) external view returns (Task memory);

    /// @notice The address of a worker id.
    /// @param id The worker id (1..).
    /// @return The worker's address (address(0) for an unknown id).
    function workerAddress(uint32 id) external view returns (address);

    /// @notice One worker.
    /// @param worker The worker's address.
    /// @return The worker (registered false when unknown).
    function getWorker(address worker) external view returns (Worker memory);

    /// @notice The result hash committed for a task.
    /// @dev Keyed by the task: the same hash committed on another task (a copier's) neither blocks nor binds this one.
    /// @param taskId The task.
    /// @return The committed result hash (bytes32(0) while none is committed).
    function resultOf(uint256 taskId) external view returns (bytes32);

    /// @notice The withdrawable credit of an account.
    /// @param account The account.
    /// @return Wei withdrawable.
    function creditOf(address account) external view returns (uint256);

    /// @notice Id of the last posted task (0 before any).
    /// @return The id.
    function lastTaskId() external view returns (uint256);

    /// @notice Number of tasks still holding escrow (Pending..Accepted).
    /// @return The count.
    function openTaskCount() external view returns (uint256);

    /// @notice Number of available workers.
    /// @return The count.
    function availableWorkerCount() external view returns (uint256);

    /// @notice A page of the open-task set, in set order.
    /// @param cursor First position.
    /// @param limit Maximum number of ids.
    /// @return ids Task ids.
    function openTasks(uint256 cursor, uint256 limit) external view returns (uint256[] memory ids);

    /// @notice Scan `limit` positions of the open-task set from `cursor` and return the tasks in `status`.
    /// @param status Pending, Executing, AwaitingValidator, Validating or Accepted.
    /// @param cursor First position scanned.
    /// @param limit Positions scanned.
    /// @return ids Matching task ids.
    /// @return nextCursor Position to continue from (== openTaskCount() when done).
    function tasksInStatus(Status status, uint256 cursor, uint256 limit)
        external
        view
        returns (uint256[] memory ids, uint256 nextCursor);

    /// @notice A page of the available-worker set.
    /// @param cursor First position.
    /// @param limit Maximum number of workers.
    /// @return workers Worker addresses.
    function availableWorkers(uint256 cursor, uint256 limit) external view returns (address[] memory workers);
}
