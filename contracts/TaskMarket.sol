// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ITaskMarket} from "./interfaces/ITaskMarket.sol";
import {IRatings} from "./interfaces/IRatings.sol";
import {Ratings} from "./Ratings.sol";

/// @title TaskMarket
/// @notice Escrow and state machine of iChain tasks (protocol v2, fair exchange), with a worker registry, the
///         providers' trusted validator sets and enumerable pools.
/// @dev Gas design (every state-changing function is O(1)):
///      - a task is 2 packed slots: workers get a permanent uint32 id at registration, so the provider and the
///        validator fit beside the price and the fee; the task hash and all locators are only emitted;
///      - the collateral, the failure fee and every payout are derived from the price and the fee (collateralFor
///        and the BPS constants), never stored, so settling and rating re-derive them instead of reading a slot;
///      - the result commitment costs no slot of its own: while a task is open it owns a position in the open-task
///        set, whose slot holds its id in the low 64 bits, and submitResult writes the first 24 bytes of the result
///        hash into the high 192 bits of that same (already non-zero) slot. The verdict is checked against it, the
///        swap-and-pop moves it with the id, and settling frees it with the position. 192 bits keep the binding
///        (a second preimage costs 2^192 hashes); the full hash is in ResultSubmitted and VerdictSubmitted;
///      - open tasks (those holding escrow) and available workers live in swap-and-pop index sets whose
///        position is stored in the element itself; popped set slots are left dirty on purpose, so a later push
///        rewrites a non-zero slot instead of creating one;
///      - the burned total shares the Counters slot, which every settlement already rewrites (_removeOpen);
///      - credits are stored plus one (0 = never touched) and withdraw leaves the 1, so crediting an account that
///        was ever credited or registered rewrites a non-zero slot;
///      - an offer document is never stored: it is emitted in WorkerOffered, and the worker's record keeps only
///        its hash (one slot) and the event's block in the 6 free bytes of the record's packed slot, so a reader
///        fetches the logs of exactly that block and checks the document against the hash.
contract TaskMarket is ITaskMarket {
    /// @notice Share of every paid amount that is burned (kept in this contract for ever), in basis points.
    uint256 public constant BURN_BPS = 100;
    /// @notice Collateral beyond the validator fee a provider posts with its result, in basis points of the price.
    uint256 public constant COLLATERAL_BPS = 1000;
    /// @notice Share of the price a provider keeps when it reports a failing run, in basis points.
    uint256 public constant FAILURE_BPS = 1000;
    /// @notice Longest failure report (and decline reason) in bytes.
    uint256 public constant MAX_REPORT_BYTES = 1024;
    /// @notice Longest offer document in bytes.
    uint256 public constant MAX_OFFER_BYTES = 2048;
    uint256 private constant _BPS = 10_000;

    /// @notice Seconds the validator has for its verdict once the result is committed.
    uint256 public immutable validationWindow;
    /// @notice Smallest allowed per-task execution timeout (seconds).
    uint256 public immutable minTimeout;
    /// @notice Largest allowed per-task execution timeout (seconds).
    uint256 public immutable maxTimeout;
    /// @inheritdoc ITaskMarket
    IRatings public immutable ratings;

    struct StoredTask {
        // slot 0
        address requester;
        Status status;
        uint32 deadline;
        uint32 poolIndex;
        uint24 timeout;
        // slot 1
        uint32 providerId;
        uint32 validatorId;
        uint96 price;
        uint96 validatorFee;
    }

    struct Counters {
        uint64 lastTaskId;
        uint32 openTasks;
        uint32 availableWorkers;
        uint32 lastWorkerId;
        // uint96 holds far more wei than exists; a burn can only come out of escrow this contract holds
        uint96 burned;
    }

    Counters private _counters;
    mapping(uint256 taskId => StoredTask) private _tasks;
    mapping(address worker => Worker) private _workers;
    mapping(uint32 id => address worker) private _workerAt;
    mapping(address provider => mapping(address validator => bool)) private _trusted;
    mapping(address account => uint256 creditPlusOne) private _credits;
    /// @dev position => task id (low 64 bits) | first 24 bytes of its result hash once committed (high 192 bits)
    mapping(uint256 position => uint256 entry) private _openTaskAt;
    mapping(uint256 position => address worker) private _availableWorkerAt;

    uint256 private constant _LOCK_SLOT = uint256(keccak256("ichain.TaskMarket.lock")) - 1;

    /// @param validationWindow_ Seconds a validator has for its verdict.
    /// @param minTimeout_ Smallest per-task execution timeout.
    /// @param maxTimeout_ Largest per-task execution timeout (fits in uint24).
    constructor(uint256 validationWindow_, uint256 minTimeout_, uint256 maxTimeout_) {
        if (
            validationWindow_ == 0 || minTimeout_ == 0 || minTimeout_ > maxTimeout_ || maxTimeout_ > type(uint24).max
                || validationWindow_ > type(uint24).max
        ) revert TaskMarket__InvalidWindows();
        validationWindow = validationWindow_;
        minTimeout = minTimeout_;
        maxTimeout = maxTimeout_;
        ratings = new Ratings();
    }

    modifier nonReentrant() {
        uint256 slot = _LOCK_SLOT;
        uint256 locked;
        assembly ("memory-safe") {
            locked := tload(slot)
        }
        if (locked != 0) revert TaskMarket__Reentrancy();
        assembly ("memory-safe") {
            tstore(slot, 1)
        }
        _;
        assembly ("memory-safe") {
            tstore(slot, 0)
        }
    }

    // ================================================================== workers

    /// @inheritdoc ITaskMarket
    function register(bytes32 encKey, uint96 price, bool available) external {
        if (encKey == bytes32(0)) revert TaskMarket__ZeroKey();
        Worker storage w = _workers[msg.sender];
        if (w.registered) revert TaskMarket__AlreadyRegistered(msg.sender);
        if (w.id == 0) {
            // ids are permanent: a worker that leaves and comes back keeps its id (and its missed count)
            uint32 id = ++_counters.lastWorkerId;
            w.id = id;
            _workerAt[id] = msg.sender;
        }
        w.encKey = encKey;
        w.price = price;
        w.registered = true;
        if (available) _addAvailable(msg.sender, w);
        if (_credits[msg.sender] == 0) _credits[msg.sender] = 1;
        emit WorkerRegistered(msg.sender, encKey, price, available);
        // trusted contract deployed by this one; called last (checks-effects-interactions)
        ratings.track(msg.sender);
    }

    /// @inheritdoc ITaskMarket
    function update(bytes32 encKey, uint96 price, bool available) external {
        if (encKey == bytes32(0)) revert TaskMarket__ZeroKey();
        Worker storage w = _workers[msg.sender];
        if (!w.registered) revert TaskMarket__NotAWorker(msg.sender);
        w.encKey = encKey;
        w.price = price;
        if (available && !w.available) _addAvailable(msg.sender, w);
        else if (!available && w.available) _removeAvailable(w);
        emit WorkerUpdated(msg.sender, encKey, price, available);
    }

    /// @inheritdoc ITaskMarket
    function leave() external {
        Worker storage w = _workers[msg.sender];
        if (!w.registered) revert TaskMarket__NotAWorker(msg.sender);
        if (w.available) _removeAvailable(w);
        w.registered = false;
        w.encKey = bytes32(0);
        w.price = 0;
        w.offerBlock = 0;
        w.offerHash = bytes32(0);
        emit WorkerLeft(msg.sender);
    }

    /// @inheritdoc ITaskMarket
    function publishOffer(bytes calldata offer) external {
        Worker storage w = _workers[msg.sender];
        if (!w.registered) revert TaskMarket__NotAWorker(msg.sender);
        if (offer.length == 0 || offer.length > MAX_OFFER_BYTES) revert TaskMarket__InvalidOffer(offer.length);
        bytes32 offerHash = keccak256(offer);
        w.offerHash = offerHash;
        // block numbers stay below 2^48 for millions of years at any block time in use
        w.offerBlock = uint48(block.number);
        emit WorkerOffered(msg.sender, offerHash, offer);
    }

    /// @inheritdoc ITaskMarket
    function setTrust(address validator, bool trusted) external {
        if (validator == address(0) || validator == msg.sender) revert TaskMarket__InvalidValidator(validator);
        _trusted[msg.sender][validator] = trusted;
        emit TrustChanged(msg.sender, validator, trusted);
    }

    // ================================================================== task lifecycle

    /// @inheritdoc ITaskMarket
    function post(bytes32 taskHash, Terms calldata terms, bytes calldata locator)
        external
        payable
        returns (uint256 taskId)
    {
        if (taskHash == bytes32(0)) revert TaskMarket__ZeroTaskHash();
        uint32 deadline;
        (taskId, deadline) = _openTask(terms);
        emit TaskPosted(
            taskId,
            terms.provider,
            terms.validator,
            msg.sender,
            taskHash,
            terms.price,
            terms.validatorFee,
            deadline,
            locator
        );
    }

    /// @inheritdoc ITaskMarket
    function assignProvider(uint256 taskId, address provider, bytes calldata locator) external {
        StoredTask storage t = _requesterTask(taskId);
        if (t.status != Status.Pending) revert TaskMarket__WrongState(taskId, t.status);
        uint96 price = t.price;
        uint32 validatorId = t.validatorId;
        uint32 providerId = _checkProvider(provider, validatorId, _workerAt[validatorId], price);

        uint32 deadline = uint32(block.timestamp + t.timeout);
        t.status = Status.Executing;
        t.deadline = deadline;
        t.providerId = providerId;
        emit ProviderAssigned(taskId, provider, msg.sender, price, deadline, locator);
    }

    /// @inheritdoc ITaskMarket
    function submitResult(uint256 taskId, bytes32 resultHash, bytes calldata validatorLocator) external payable {
        StoredTask storage t = _providerTask(taskId);
        if (resultHash == bytes32(0)) revert TaskMarket__ZeroResultHash();
        uint256 collateral = _collateral(t.price, t.validatorFee);
        if (msg.value != collateral) revert TaskMarket__WrongDeposit(collateral, msg.value);

        uint32 deadline = uint32(block.timestamp + validationWindow);
        // task ids are below 2^64 (Counters.lastTaskId): the id keeps the low bits, the commitment the high ones
        _openTaskAt[t.poolIndex] = (uint256(_commitment(resultHash)) << 64) | taskId;
        t.status = Status.Validating;
        t.deadline = deadline;
        emit ResultSubmitted(
            taskId,
            msg.sender,
            _workerAt[t.validatorId],
            t.requester,
            resultHash,
            collateral,
            deadline,
            validatorLocator
        );
    }

    /// @inheritdoc ITaskMarket
    function reportFailure(uint256 taskId, bytes calldata report) external {
        StoredTask storage t = _providerTask(taskId);
        if (report.length == 0 || report.length > MAX_REPORT_BYTES) revert TaskMarket__InvalidReport(report.length);

        (uint256 providerPaid, uint256 burn) = _failurePay(t.price);
        uint256 refund = uint256(t.price) + t.validatorFee - providerPaid - burn;
        address requester = t.requester;
        t.status = Status.Failed;
        _removeOpen(t.poolIndex, burn);
        _credit(msg.sender, providerPaid);
        _credit(requester, refund);
        emit TaskFailed(taskId, msg.sender, requester, providerPaid, refund, burn, report);
    }

    /// @inheritdoc ITaskMarket
    function decline(uint256 taskId, bytes calldata reason) external {
        StoredTask storage t = _providerTask(taskId);
        if (reason.length == 0 || reason.length > MAX_REPORT_BYTES) revert TaskMarket__InvalidReport(reason.length);

        // naming a provider never took it out of the available pool, so declining puts nothing back there
        uint256 refund = uint256(t.price) + t.validatorFee;
        address requester = t.requester;
        t.status = Status.Declined;
        _removeOpen(t.poolIndex, 0);
        _credit(requester, refund);
        emit TaskDeclined(taskId, msg.sender, reason);
    }

    /// @inheritdoc ITaskMarket
    function submitVerdict(uint256 taskId, bytes32 resultHash, bool accept, bytes calldata requesterLocator)
        external
    {
        StoredTask storage t = _tasks[taskId];
        Status status = t.status;
        if (status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        // ids are permanent and id 0 is nobody's (_workerAt[0] is zero): the caller holds the validator's id
        if (_workerAt[t.validatorId] != msg.sender) revert TaskMarket__NotValidator(taskId, msg.sender);
        if (status != Status.Validating) revert TaskMarket__WrongState(taskId, status);
        if (block.timestamp > t.deadline) revert TaskMarket__DeadlinePassed(taskId, t.deadline);
        if (_openTaskAt[t.poolIndex] >> 64 != _commitment(resultHash)) revert TaskMarket__WrongResult(taskId, resultHash);

        // [providerPaid, validatorPaid, burned] in memory: the event's fields do not fit the stack otherwise
        (address requester, uint256[3] memory paid) = _settleVerdict(t, accept);
        if (accept) {
            emit VerdictSubmitted(
                taskId, msg.sender, requester, resultHash, true, paid[0], paid[1], paid[2], requesterLocator
            );
        } else {
            emit VerdictSubmitted(taskId, msg.sender, requester, resultHash, false, 0, paid[1], paid[2], "");
        }
    }

    /// @inheritdoc ITaskMarket
    function rate(uint256 taskId, uint8 providerRating, uint8 validatorRating) external {
        StoredTask storage t = _requesterTask(taskId);
        Status status = t.status;
        if (status != Status.Completed && status != Status.Failed) revert TaskMarket__WrongState(taskId, status);
        if (providerRating == 0 || providerRating > 5) revert TaskMarket__InvalidRating(providerRating);
        if (validatorRating > 5 || (validatorRating != 0 && status == Status.Failed)) {
            revert TaskMarket__InvalidRating(validatorRating);
        }

        uint256 price = t.price;
        uint256 providerPaid;
        uint256 validatorPaid = 0; // a failed task paid the validator nothing (and its rating must be 0)
        if (status == Status.Completed) {
            providerPaid = price - price * BURN_BPS / _BPS;
            uint256 fee = t.validatorFee;
            validatorPaid = fee - fee * BURN_BPS / _BPS;
        } else {
            // a failed task paid the provider the failure fee
            (providerPaid,) = _failurePay(price);
        }
        address provider = _workerAt[t.providerId];
        address validator = _workerAt[t.validatorId];
        t.status = Status.Rated;
        emit TaskRated(taskId, provider, msg.sender, validator, providerRating, validatorRating);
        // trusted contract deployed by this one; called last (checks-effects-interactions)
        ratings.rate(provider, providerRating, providerPaid, validator, validatorRating, validatorPaid);
    }

    /// @inheritdoc ITaskMarket
    function cancel(uint256 taskId) external {
        StoredTask storage t = _requesterTask(taskId);
        if (t.status != Status.Pending) revert TaskMarket__WrongState(taskId, t.status);
        uint256 refund = uint256(t.price) + t.validatorFee;
        t.status = Status.Cancelled;
        _removeOpen(t.poolIndex, 0);
        _credit(msg.sender, refund);
        emit TaskCancelled(taskId, msg.sender, refund);
    }

    /// @inheritdoc ITaskMarket
    function expire(uint256 taskId) external {
        StoredTask storage t = _tasks[taskId];
        Status status = t.status;
        if (status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        if (uint8(status) > uint8(Status.Validating)) revert TaskMarket__WrongState(taskId, status);
        if (block.timestamp <= t.deadline) revert TaskMarket__DeadlineNotReached(taskId, t.deadline);

        address requester = t.requester;
        address provider = _workerAt[t.providerId]; // address(0) while Pending
        uint256 price = t.price;
        uint256 fee = t.validatorFee;
        // every silence settles against the silent party: a silent provider (Pending/Executing) earns nothing;
        // a silent validator leaves the requester refunded without the result, the provider its collateral
        // back and its own record a missed verdict (it loses the fee it would have earned)
        uint256 payout = status == Status.Validating ? _collateral(price, fee) : 0;
        t.status = Status.Expired;
        _removeOpen(t.poolIndex, 0);
        _credit(requester, price + fee);
        if (payout != 0) {
            _credit(provider, payout);
            ++_workers[_workerAt[t.validatorId]].missed;
        }
        emit TaskExpired(taskId, requester, provider, status, price + fee, payout);
    }

    /// @inheritdoc ITaskMarket
    function withdraw() external nonReentrant returns (uint256 amount) {
        amount = _withdraw(payable(msg.sender));
    }

    /// @inheritdoc ITaskMarket
    function withdrawTo(address payable to) external nonReentrant returns (uint256 amount) {
        amount = _withdraw(to);
    }

    // ================================================================== views

    /// @inheritdoc ITaskMarket
    function getTask(uint256 taskId) external view returns (Task memory task) {
        StoredTask memory t = _tasks[taskId];
        task = Task({
            requester: t.requester,
            status: t.status,
            deadline: t.deadline,
            poolIndex: t.poolIndex,
            timeout: t.timeout,
            provider: _workerAt[t.providerId],
            price: t.price,
            validator: _workerAt[t.validatorId],
            validatorFee: t.validatorFee
        });
    }

    /// @inheritdoc ITaskMarket
    function getWorker(address worker) external view returns (Worker memory) {
        return _workers[worker];
    }

    /// @inheritdoc ITaskMarket
    function workerAddress(uint32 id) external view returns (address) {
        return _workerAt[id];
    }

    /// @inheritdoc ITaskMarket
    function trusts(address provider, address validator) external view returns (bool) {
        return _trusted[provider][validator];
    }

    /// @inheritdoc ITaskMarket
    function resultOf(uint256 taskId) external view returns (bytes32) {
        StoredTask storage t = _tasks[taskId];
        if (t.status != Status.Validating) return bytes32(0);
        return bytes32(uint256(uint192(_openTaskAt[t.poolIndex] >> 64)) << 64);
    }

    /// @inheritdoc ITaskMarket
    function collateralFor(uint256 price, uint256 validatorFee) external pure returns (uint256) {
        return _collateral(price, validatorFee);
    }

    /// @inheritdoc ITaskMarket
    function burned() external view returns (uint256) {
        return _counters.burned;
    }

    /// @inheritdoc ITaskMarket
    function creditOf(address account) external view returns (uint256) {
        uint256 stored = _credits[account];
        return stored == 0 ? 0 : stored - 1;
    }

    /// @inheritdoc ITaskMarket
    function lastTaskId() external view returns (uint256) {
        return _counters.lastTaskId;
    }

    /// @inheritdoc ITaskMarket
    function openTaskCount() external view returns (uint256) {
        return _counters.openTasks;
    }

    /// @inheritdoc ITaskMarket
    function availableWorkerCount() external view returns (uint256) {
        return _counters.availableWorkers;
    }

    /// @inheritdoc ITaskMarket
    function openTasks(uint256 cursor, uint256 limit) external view returns (uint256[] memory ids) {
        uint256 end = _pageEnd(cursor, limit, _counters.openTasks);
        ids = new uint256[](end - cursor);
        for (uint256 i = cursor; i < end; ++i) {
            ids[i - cursor] = uint64(_openTaskAt[i]);
        }
    }

    /// @inheritdoc ITaskMarket
    function tasksInStatus(Status status, uint256 cursor, uint256 limit)
        external
        view
        returns (uint256[] memory ids, uint256 nextCursor)
    {
        nextCursor = _pageEnd(cursor, limit, _counters.openTasks);
        ids = new uint256[](nextCursor - cursor);
        uint256 found;
        for (uint256 i = cursor; i < nextCursor; ++i) {
            uint256 id = uint64(_openTaskAt[i]);
            if (_tasks[id].status == status) ids[found++] = id;
        }
        assembly ("memory-safe") {
            mstore(ids, found) // shrink the array to the matches
        }
    }

    /// @inheritdoc ITaskMarket
    function availableWorkers(uint256 cursor, uint256 limit) external view returns (address[] memory workers) {
        uint256 end = _pageEnd(cursor, limit, _counters.availableWorkers);
        workers = new address[](end - cursor);
        for (uint256 i = cursor; i < end; ++i) {
            workers[i - cursor] = _availableWorkerAt[i];
        }
    }

    // ================================================================== internals

    /// @dev Checks the terms, stores the new task and adds it to the open-task set (out of post() for the stack).
    function _openTask(Terms calldata terms) private returns (uint256 taskId, uint32 deadline) {
        uint24 timeout = terms.timeout;
        if (timeout < minTimeout || timeout > maxTimeout) {
            revert TaskMarket__TimeoutOutOfBounds(timeout, minTimeout, maxTimeout);
        }
        uint96 price = terms.price;
        uint256 deposit = uint256(price) + terms.validatorFee;
        if (msg.value != deposit) revert TaskMarket__WrongDeposit(deposit, msg.value);
        address validator = terms.validator;
        uint32 validatorId = _checkValidator(validator, terms.validatorFee);
        uint32 providerId =
            terms.provider == address(0) ? 0 : _checkProvider(terms.provider, validatorId, validator, price);

        Counters memory c = _counters;
        taskId = c.lastTaskId + 1;
        uint32 position = c.openTasks;
        c.lastTaskId = uint64(taskId);
        c.openTasks = position + 1;
        _counters = c;
        _openTaskAt[position] = taskId;
        deadline = uint32(block.timestamp + timeout);
        _tasks[taskId] = StoredTask({
            requester: msg.sender,
            status: providerId == 0 ? Status.Pending : Status.Executing,
            deadline: deadline,
            poolIndex: position,
            timeout: timeout,
            providerId: providerId,
            validatorId: validatorId,
            price: price,
            validatorFee: terms.validatorFee
        });
    }

    /// @dev Moves a judged task out of escrow and credits the verdict's payouts (out of submitVerdict() for the
    ///      stack).
    function _settleVerdict(StoredTask storage t, bool accept)
        private
        returns (address requester, uint256[3] memory paid)
    {
        uint256 price = t.price;
        uint256 fee = t.validatorFee;
        requester = t.requester;
        uint256 validatorBurn = fee * BURN_BPS / _BPS;
        uint256 validatorPaid = fee - validatorBurn;
        uint256 collateral = _collateral(price, fee);
        uint256 burn;
        if (accept) {
            // the provider is paid the price less the burn and gets its collateral back; the validator its fee
            uint256 providerBurn = price * BURN_BPS / _BPS;
            uint256 providerPaid = price - providerBurn + collateral;
            burn = providerBurn + validatorBurn;
            paid[0] = providerPaid;
            t.status = Status.Completed;
            _removeOpen(t.poolIndex, burn);
            _credit(_workerAt[t.providerId], providerPaid);
        } else {
            // the requester never held the result: price and fee back; the provider's collateral pays the judge
            // and the rest of it is burned, so a reject profits no one who could have arranged it
            burn = collateral - validatorPaid;
            t.status = Status.Rejected;
            _removeOpen(t.poolIndex, burn);
            _credit(requester, price + fee);
        }
        paid[1] = validatorPaid;
        paid[2] = burn;
        _credit(msg.sender, validatorPaid);
    }

    function _requesterTask(uint256 taskId) private view returns (StoredTask storage t) {
        t = _tasks[taskId];
        if (t.status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        if (msg.sender != t.requester) revert TaskMarket__NotRequester(taskId, msg.sender);
    }

    /// @dev The caller's Executing task, before its deadline (submitResult, reportFailure and decline).
    function _providerTask(uint256 taskId) private view returns (StoredTask storage t) {
        t = _tasks[taskId];
        Status status = t.status;
        if (status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        // ids are permanent and id 0 is nobody's (_workerAt[0] is zero), so a Pending task (no provider yet)
        // refuses everyone here
        if (_workerAt[t.providerId] != msg.sender) revert TaskMarket__NotProvider(taskId, msg.sender);
        if (status != Status.Executing) revert TaskMarket__WrongState(taskId, status);
        if (block.timestamp > t.deadline) revert TaskMarket__DeadlinePassed(taskId, t.deadline);
    }

    /// @dev An available registered worker asking <= price, not the requester (msg.sender) nor the validator,
    ///      that trusts the task's validator.
    function _checkProvider(address provider, uint32 validatorId, address validator, uint96 price)
        private
        view
        returns (uint32 id)
    {
        if (provider == address(0) || provider == msg.sender) revert TaskMarket__InvalidProvider(provider);
        Worker storage w = _workers[provider];
        if (!w.registered) revert TaskMarket__NotAWorker(provider);
        if (!w.available) revert TaskMarket__WorkerUnavailable(provider);
        if (w.price > price) revert TaskMarket__PriceTooLow(provider, w.price, price);
        id = w.id;
        if (id == validatorId) revert TaskMarket__InvalidProvider(provider);
        if (!_trusted[provider][validator]) revert TaskMarket__ValidatorNotTrusted(provider, validator);
    }

    /// @dev An available registered worker asking <= fee (its consent to judge for it), not the requester.
    function _checkValidator(address validator, uint96 fee) private view returns (uint32 id) {
        if (validator == address(0) || validator == msg.sender) revert TaskMarket__InvalidValidator(validator);
        Worker storage w = _workers[validator];
        if (!w.registered) revert TaskMarket__NotAWorker(validator);
        if (!w.available) revert TaskMarket__WorkerUnavailable(validator);
        if (w.price > fee) revert TaskMarket__PriceTooLow(validator, w.price, fee);
        id = w.id;
    }

    /// @dev The stored part of a result commitment: its first 24 bytes.
    function _commitment(bytes32 resultHash) private pure returns (uint192) {
        return uint192(uint256(resultHash) >> 64);
    }

    function _collateral(uint256 price, uint256 fee) private pure returns (uint256) {
        return fee + price * COLLATERAL_BPS / _BPS;
    }

    /// @dev The failure fee a provider keeps (less the burn) and the burn.
    function _failurePay(uint256 price) private pure returns (uint256 paid, uint256 burn) {
        // both from the price (one rounding each), so no product of a rounded quotient
        burn = price * (FAILURE_BPS * BURN_BPS) / (_BPS * _BPS);
        paid = price * FAILURE_BPS / _BPS - burn;
    }

    function _credit(address account, uint256 amount) private {
        uint256 stored = _credits[account];
        _credits[account] = (stored == 0 ? 1 : stored) + amount;
    }

    function _withdraw(address payable to) private returns (uint256 amount) {
        uint256 stored = _credits[msg.sender];
        if (stored <= 1) revert TaskMarket__NothingToWithdraw(msg.sender);
        amount = stored - 1;
        _credits[msg.sender] = 1;
        emit Withdrawn(msg.sender, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TaskMarket__TransferFailed(to, amount);
    }

    /// @dev Swap-and-pop removal from the open-task set (the popped slot is left dirty, see contract doc), and
    ///      the settlement's burn added to the total in the same slot write.
    function _removeOpen(uint32 position, uint256 burn) private {
        Counters storage c = _counters;
        uint32 last = c.openTasks - 1;
        if (position != last) {
            uint256 moved = _openTaskAt[last];
            _openTaskAt[position] = moved;
            _tasks[uint64(moved)].poolIndex = position;
        }
        c.openTasks = last;
        // a burn is part of one task's escrow (< 2^97 wei); the checked add only reverts past all ether in existence
        c.burned += uint96(burn);
    }

    function _addAvailable(address worker, Worker storage w) private {
        uint32 position = _counters.availableWorkers;
        _availableWorkerAt[position] = worker;
        w.poolIndex = position;
        w.available = true;
        _counters.availableWorkers = position + 1;
    }

    function _removeAvailable(Worker storage w) private {
        uint32 position = w.poolIndex;
        uint32 last = _counters.availableWorkers - 1;
        if (position != last) {
            address moved = _availableWorkerAt[last];
            _availableWorkerAt[position] = moved;
            _workers[moved].poolIndex = position;
        }
        w.available = false;
        w.poolIndex = 0;
        _counters.availableWorkers = last;
    }

    function _pageEnd(uint256 cursor, uint256 limit, uint256 size) private pure returns (uint256) {
        if (cursor >= size) return cursor;
        uint256 room = size - cursor;
        return cursor + (limit < room ? limit : room);
    }
}
