// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRatings} from "./IRatings.sol";

/// @title ITaskMarket
/// @notice Escrowed marketplace for ML compute, protocol v2 (fair exchange).
///         - The requester escrows price + validator fee and names a validator; the provider consents to that
///           validator on chain (its trusted set), so no verdict comes from a party only one side chose.
///         - The provider commits its result with collateral (fee + 10% of the price) and hosts the task and the
///           result for the validator only. The requester gets nothing that opens the result before the accept:
///           the validator releases the result's locator, sealed to the requester, in its accepting verdict, and
///           the same transaction pays the provider and the validator (payment and delivery are one step).
///         - A reject refunds the requester (who never held the result); the provider's collateral pays the
///           validator (the loser pays the judge) and the rest is burned, so no party profits from a reject.
///         - A provider whose run fails (execute mode crashed, or the task's own validate mode rejects the
///           provider's result) ends the task at once with a report sealed to the requester and keeps a failure
///           fee (10% of the price), so failing tasks cannot grind providers for free.
///         - A provider that cannot run a task (it needs a runtime or hardware this provider lacks) declines it
///           before its deadline with a plain-text reason: the requester gets the whole escrow back at once,
///           nobody is paid and nothing is burned (the same money as a silent provider's expiry, without the wait).
///         - Every timeout settles against the silent party; 1% of every paid amount is burned, and a rating
///           weighs as much as the amount it paid for, so a bought ranking costs ether in proportion.
///         - A worker advertises its hardware in an offer document that lives only in the log of its own
///           publishOffer transaction; its record keeps the document's hash and that block, so any reader fetches
///           the document from exactly that block and checks it against the hash.
///         All payouts are pull payments; burned wei stays locked in this contract for ever.
interface ITaskMarket {
    /// @notice Task lifecycle. Settled (no escrow left): Completed, Failed, Rejected, Rated, Cancelled, Expired,
    ///         Declined.
    enum Status {
        None, // 0: no such task
        Pending, // 1: posted with its validator, no provider yet
        Executing, // 2: provider named; result or failure report due before the deadline
        Validating, // 3: result committed with collateral; the validator's verdict due before the deadline
        Completed, // 4: accepted: provider and validator paid, result released; the requester may rate once
        Failed, // 5: the provider reported a failing run: failure fee paid, rest refunded; the requester may rate once
        Rejected, // 6: rejected: requester refunded, collateral paid the validator, the rest burned
        Rated, // 7: a Completed or Failed task the requester rated
        Cancelled, // 8: cancelled by the requester while Pending
        Expired, // 9: a deadline passed and expire() settled the escrow against the silent party
        Declined // 10: the provider declined the task while Executing: the requester got price + fee back
    }

    /// @notice A task as returned by getTask (parties resolved from worker ids; hashes and locators are only in
    ///         events, except the result commitment, see resultOf).
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
        address validator; // required: a registered, available worker asking at most validatorFee
        uint96 price; // wei paid to the provider on acceptance (at least the provider's asking price)
        uint96 validatorFee; // wei paid to the validator for its verdict (at least its asking price)
        uint24 timeout; // seconds the provider has once named, within [minTimeout, maxTimeout]
    }

    /// @notice A registered worker (provider and/or validator; `price` is its asking price for either role).
    struct Worker {
        bytes32 encKey; // X25519 public key: locators for this worker are sealed to it
        uint96 price; // asking price in wei (price for a run, fee for a verdict)
        uint32 poolIndex; // position in the available-worker set while available
        uint32 id; // permanent worker id (kept across leave and re-register), 0 for never registered
        bool registered;
        bool available;
        uint32 missed; // verdicts this worker let expire as a validator (its record, never reset)
        uint48 offerBlock; // block of the WorkerOffered event holding its current offer (0: none published)
        bytes32 offerHash; // keccak256 of its current offer document (zero: none published)
    }

    // ------------------------------------------------------------------ events
    /// @notice A worker registered.
    event WorkerRegistered(address indexed worker, bytes32 encKey, uint96 price, bool available);
    /// @notice A worker changed its key, price or availability.
    event WorkerUpdated(address indexed worker, bytes32 encKey, uint96 price, bool available);
    /// @notice A worker left the registry (its open tasks carry on).
    event WorkerLeft(address indexed worker);
    /// @notice A worker published its offer (hardware, runtimes: a JSON document the contract does not read);
    ///         its record keeps `offerHash` and this block, the document is only here.
    event WorkerOffered(address indexed worker, bytes32 indexed offerHash, bytes offer);
    /// @notice A provider added a validator to its trusted set, or removed it.
    event TrustChanged(address indexed provider, address indexed validator, bool trusted);
    /// @notice A task was posted with its escrow; `locator` is sealed to the named provider (empty while pending).
    event TaskPosted(
        uint256 indexed taskId,
        address indexed provider,
        address indexed validator,
        address requester,
        bytes32 taskHash,
        uint96 price,
        uint96 validatorFee,
        uint32 deadline,
        bytes locator
    );
    /// @notice The requester named the provider of a pending task; `locator` is sealed to it.
    event ProviderAssigned(
        uint256 indexed taskId, address indexed provider, address requester, uint96 price, uint32 deadline, bytes locator
    );
    /// @notice The provider committed its result with `collateral`; `validatorLocator` is sealed to the validator
    ///         and opens the task and the result. Nothing here opens the result for the requester.
    event ResultSubmitted(
        uint256 indexed taskId,
        address indexed provider,
        address indexed validator,
        address requester,
        bytes32 resultHash,
        uint256 collateral,
        uint32 deadline,
        bytes validatorLocator
    );
    /// @notice The provider ended a task whose run failed; `report` (exit code, last lines of stderr) is sealed
    ///         to the requester. The provider kept `providerPaid`, the requester got `refund` back.
    event TaskFailed(
        uint256 indexed taskId,
        address indexed provider,
        address indexed requester,
        uint256 providerPaid,
        uint256 refund,
        uint256 burned,
        bytes report
    );
    /// @notice The provider declined a task it cannot run; `reason` is plain text (public). The requester was
    ///         credited price + fee; nobody was paid and nothing was burned.
    event TaskDeclined(uint256 indexed taskId, address indexed provider, bytes reason);
    /// @notice The validator judged the committed result. On accept `requesterLocator` (sealed to the requester)
    ///         opens the result, the provider got price (less the burn) plus its collateral back and the validator
    ///         its fee (less the burn). On reject the requester got price + fee back, the validator its fee (less
    ///         the burn) out of the provider's collateral, and the rest of the collateral was burned.
    event VerdictSubmitted(
        uint256 indexed taskId,
        address indexed validator,
        address indexed requester,
        bytes32 resultHash,
        bool accepted,
        uint256 providerPaid,
        uint256 validatorPaid,
        uint256 burned,
        bytes requesterLocator
    );
    /// @notice The requester rated a Completed or Failed task (validatorRating 0: validator not rated).
    event TaskRated(
        uint256 indexed taskId,
        address indexed provider,
        address indexed requester,
        address validator,
        uint8 providerRating,
        uint8 validatorRating
    );
    /// @notice The requester cancelled a pending task and was refunded.
    event TaskCancelled(uint256 indexed taskId, address indexed requester, uint256 refund);
    /// @notice A deadline passed and the escrow was settled against the silent party: `refund` to the requester,
    ///         `payout` to the provider (its collateral back when the validator was silent).
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
    /// @notice A constructor window or timeout bound is zero, inverted or too large.
    error TaskMarket__InvalidWindows();
    /// @notice The caller is already a registered worker.
    error TaskMarket__AlreadyRegistered(address worker);
    /// @notice The account is not a registered worker.
    error TaskMarket__NotAWorker(address account);
    /// @notice A worker's encryption key cannot be zero.
    error TaskMarket__ZeroKey();
    /// @notice The worker is registered but not available for new tasks.
    error TaskMarket__WorkerUnavailable(address worker);
    /// @notice The offered price (or fee) is below the worker's asking price.
    error TaskMarket__PriceTooLow(address worker, uint96 asking, uint96 offered);
    /// @notice msg.value is not the exact deposit (price + fee) or collateral required.
    error TaskMarket__WrongDeposit(uint256 expected, uint256 sent);
    /// @notice The task's timeout is outside [minTimeout, maxTimeout].
    error TaskMarket__TimeoutOutOfBounds(uint256 timeout, uint256 minTimeout, uint256 maxTimeout);
    /// @notice A task hash cannot be zero.
    error TaskMarket__ZeroTaskHash();
    /// @notice The provider is zero, the requester itself or the task's validator.
    error TaskMarket__InvalidProvider(address provider);
    /// @notice The validator is zero, the requester itself or the task's provider.
    error TaskMarket__InvalidValidator(address validator);
    /// @notice The provider has not put the validator in its trusted set.
    error TaskMarket__ValidatorNotTrusted(address provider, address validator);
    /// @notice No task has this id.
    error TaskMarket__TaskNotFound(uint256 taskId);
    /// @notice Only the task's requester may do this.
    error TaskMarket__NotRequester(uint256 taskId, address caller);
    /// @notice Only the task's provider may do this.
    error TaskMarket__NotProvider(uint256 taskId, address caller);
    /// @notice Only the task's validator may do this.
    error TaskMarket__NotValidator(uint256 taskId, address caller);
    /// @notice The task is not in a state that allows this.
    error TaskMarket__WrongState(uint256 taskId, Status status);
    /// @notice The current state's deadline has passed.
    error TaskMarket__DeadlinePassed(uint256 taskId, uint256 deadline);
    /// @notice The current state's deadline has not passed yet.
    error TaskMarket__DeadlineNotReached(uint256 taskId, uint256 deadline);
    /// @notice A result hash cannot be zero.
    error TaskMarket__ZeroResultHash();
    /// @notice The verdict names another result than the one committed.
    error TaskMarket__WrongResult(uint256 taskId, bytes32 resultHash);
    /// @notice A provider rating must be 1..5; a validator rating 0..5 (0 only: not rated), and 0 for a failed task.
    error TaskMarket__InvalidRating(uint8 rating);
    /// @notice A failure report or a decline reason must be 1..1024 bytes.
    error TaskMarket__InvalidReport(uint256 length);
    /// @notice An offer document must be 1..2048 bytes.
    error TaskMarket__InvalidOffer(uint256 length);
    /// @notice The caller has no credit.
    error TaskMarket__NothingToWithdraw(address account);
    /// @notice The ether transfer of a withdrawal failed.
    error TaskMarket__TransferFailed(address to, uint256 amount);
    /// @notice A withdrawal was re-entered.
    error TaskMarket__Reentrancy();

    // ------------------------------------------------------------------ workers
    /// @notice Register the caller as a worker (provider and validator).
    /// @param encKey X25519 public key locators are sealed to (non-zero).
    /// @param price Asking price in wei, for a run as a provider and for a verdict as a validator.
    /// @param available Whether to join the available-worker pool now.
    function register(bytes32 encKey, uint96 price, bool available) external;

    /// @notice Change the caller's key, asking price or availability.
    /// @param encKey New X25519 public key (non-zero).
    /// @param price New asking price in wei.
    /// @param available Whether the caller is available for new tasks.
    function update(bytes32 encKey, uint96 price, bool available) external;

    /// @notice Leave the registry; open tasks carry on, the id and the record are kept for a comeback (the offer
    ///         is cleared: a returning worker publishes a new one).
    function leave() external;

    /// @notice Publish the caller's offer: the document is emitted in WorkerOffered, never stored; the caller's
    ///         record keeps its keccak256 and this block number (a new offer replaces the old one, leave clears it).
    ///         The contract cannot check hardware claims: it binds the document to the worker's own transaction.
    /// @param offer The offer document (1..2048 bytes; the daemon writes JSON).
    function publishOffer(bytes calldata offer) external;

    /// @notice Add a validator to the caller's trusted set, or remove it: a requester can only pair the caller
    ///         with a validator it trusts, so every verdict on the caller's work comes from a party it consented to.
    /// @param validator The validator.
    /// @param trusted True to trust, false to stop trusting (tasks already running keep their validator).
    function setTrust(address validator, bool trusted) external;

    // ------------------------------------------------------------------ task lifecycle
    /// @notice Post a task with its escrow (msg.value == price + validatorFee).
    /// @param taskHash SHA-256 of the task archive (non-zero).
    /// @param terms Provider (optional), validator (required), price, fee and timeout.
    /// @param locator Task locator sealed to the provider (empty when no provider is named).
    /// @return taskId The new task's id.
    function post(bytes32 taskHash, Terms calldata terms, bytes calldata locator)
        external
        payable
        returns (uint256 taskId);

    /// @notice Name the provider of a pending task; its execution deadline starts now.
    /// @param taskId The task (caller must be its requester).
    /// @param provider An available worker asking at most the price and trusting the task's validator.
    /// @param locator Task locator sealed to the provider.
    function assignProvider(uint256 taskId, address provider, bytes calldata locator) external;

    /// @notice Commit the result with collateral (msg.value == collateralFor(price, fee)) and hand the validator
    ///         its locator. The provider hosts the task and the result for the validator.
    /// @param taskId The task (caller must be its provider, before the execution deadline).
    /// @param resultHash SHA-256 of the result archive (non-zero; the archive carries a random salt, so the
    ///        hash does not reveal a low-entropy result).
    /// @param validatorLocator Locator sealed to the validator: the task and the result (nothing in it opens for
    ///        the requester; the validator releases its own copy with the accept).
    function submitResult(uint256 taskId, bytes32 resultHash, bytes calldata validatorLocator) external payable;

    /// @notice End a task whose run failed, at once: the provider keeps the failure fee (10% of the price, less
    ///         the burn), the requester gets the rest of the price and the fee back and may rate the task.
    /// @param taskId The task (caller must be its provider, before the execution deadline).
    /// @param report Exit code and last lines of stderr, sealed to the requester (1..1024 bytes).
    function reportFailure(uint256 taskId, bytes calldata report) external;

    /// @notice Give up a task the caller cannot run, at once: the requester gets price + fee back, nobody is
    ///         paid, nothing is burned. Only before a result is committed (Executing) and before the deadline
    ///         (after it, expire refunds the same).
    /// @param taskId The task (caller must be its provider, before the execution deadline).
    /// @param reason Why, in plain text (public on chain), 1..1024 bytes.
    function decline(uint256 taskId, bytes calldata reason) external;

    /// @notice Judge the committed result; see VerdictSubmitted for who is paid what.
    /// @param taskId The task (caller must be its validator, before the validation deadline).
    /// @param resultHash The result judged (must equal the commitment).
    /// @param accept True to accept.
    /// @param requesterLocator On accept: the result's locator sealed to the requester (ignored on reject).
    function submitVerdict(uint256 taskId, bytes32 resultHash, bool accept, bytes calldata requesterLocator)
        external;

    /// @notice Rate a Completed or Failed task, once. Each rating weighs as much as the wei it paid for.
    /// @param taskId The task (caller must be its requester).
    /// @param providerRating 1..5.
    /// @param validatorRating 1..5, or 0 to leave the validator unrated (must be 0 for a failed task).
    function rate(uint256 taskId, uint8 providerRating, uint8 validatorRating) external;

    /// @notice Cancel a pending task and get the whole deposit back.
    /// @param taskId The task (caller must be its requester).
    function cancel(uint256 taskId) external;

    /// @notice Settle a task whose deadline passed, against the silent party (anyone may call):
    ///         Pending or Executing: the requester gets price + fee back; Validating: the requester gets price +
    ///         fee back, the provider its collateral, and the validator's record counts a missed verdict.
    /// @param taskId The task.
    function expire(uint256 taskId) external;

    /// @notice Pay out the caller's credit to itself.
    /// @return amount Wei sent.
    function withdraw() external returns (uint256 amount);

    /// @notice Pay out the caller's credit to `to`.
    /// @param to Recipient.
    /// @return amount Wei sent.
    function withdrawTo(address payable to) external returns (uint256 amount);

    // ------------------------------------------------------------------ views
    /// @notice The Ratings contract this market writes (deployed by it).
    /// @return The Ratings contract.
    function ratings() external view returns (IRatings);

    /// @notice A task.
    /// @param taskId The task id.
    /// @return The task (all zero when it does not exist).
    function getTask(uint256 taskId) external view returns (Task memory);

    /// @notice A worker.
    /// @param worker The worker address.
    /// @return The worker record.
    function getWorker(address worker) external view returns (Worker memory);

    /// @notice The address of a worker id.
    /// @param id The worker id.
    /// @return The worker address (zero for an unknown id).
    function workerAddress(uint32 id) external view returns (address);

    /// @notice Whether `provider` trusts `validator`.
    /// @param provider The provider.
    /// @param validator The validator.
    /// @return True when trusted.
    function trusts(address provider, address validator) external view returns (bool);

    /// @notice The on-chain result commitment of a Validating task: the first 24 bytes of its result hash, the
    ///         last 8 bytes zero (zero in any other state). The full hash is in ResultSubmitted (and, once judged,
    ///         VerdictSubmitted); a verdict must name a hash whose first 24 bytes match.
    /// @param taskId The task id.
    /// @return The commitment.
    function resultOf(uint256 taskId) external view returns (bytes32);

    /// @notice The collateral a provider posts with its result: the validator fee plus 10% of the price.
    /// @param price The task's price.
    /// @param validatorFee The task's validator fee.
    /// @return The collateral in wei.
    function collateralFor(uint256 price, uint256 validatorFee) external pure returns (uint256);

    /// @notice Wei burned so far (locked in this contract for ever).
    /// @return The burned total.
    function burned() external view returns (uint256);

    /// @notice Withdrawable credit of an account.
    /// @param account The account.
    /// @return The credit in wei.
    function creditOf(address account) external view returns (uint256);

    /// @notice The last task id (ids start at 1).
    /// @return The id.
    function lastTaskId() external view returns (uint256);

    /// @notice Number of tasks holding escrow (Pending, Executing, Validating).
    /// @return The count.
    function openTaskCount() external view returns (uint256);

    /// @notice Number of available workers.
    /// @return The count.
    function availableWorkerCount() external view returns (uint256);

    /// @notice A page of open task ids.
    /// @param cursor First position.
    /// @param limit Most ids returned.
    /// @return ids The ids.
    function openTasks(uint256 cursor, uint256 limit) external view returns (uint256[] memory ids);

    /// @notice The open tasks in `status` among positions [cursor, nextCursor).
    /// @param status The status to match.
    /// @param cursor First position scanned.
    /// @param limit Most positions scanned.
    /// @return ids Matching ids.
    /// @return nextCursor Where the next page starts.
    function tasksInStatus(Status status, uint256 cursor, uint256 limit)
        external
        view
        returns (uint256[] memory ids, uint256 nextCursor);

    /// @notice A page of available workers.
    /// @param cursor First position.
    /// @param limit Most workers returned.
    /// @return workers The addresses.
    function availableWorkers(uint256 cursor, uint256 limit) external view returns (address[] memory workers);
}
