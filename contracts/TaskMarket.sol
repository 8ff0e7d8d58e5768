// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ITaskMarket} from "./interfaces/ITaskMarket.sol";
import {IRatings} from "./interfaces/IRatings.sol";
import {Ratings} from "./Ratings.sol";

/// @title TaskMarket
/// @notice Escrow and state machine of iChain tasks, with a worker registry and enumerable pools.
/// @dev Gas design (every state-changing function is O(1)):
///      - a task is 2 packed slots: workers get a permanent uint32 id at registration, so the provider and the
///        validator fit beside the price and the fee; the task hash and all locators are only emitted;
///      - the result commitment is one slot per task, `_resultOf[taskId] = resultHash`: it is the binding the
///        validator assignment and the verdict are checked against; keyed by the task, so the same hash committed
///        on another task (a copier) never collides with it, and the status change makes it once per task;
///      - open tasks (those holding escrow) and available workers live in swap-and-pop index sets whose
///        position is stored in the element itself; popped set slots are left dirty on purpose, so a later push
///        rewrites a non-zero slot instead of creating one;
///      - credits are stored plus one (0 = never touched) and withdraw leaves the 1, so crediting an account that
///        was ever credited or registered rewrites a non-zero slot.
contract TaskMarket is ITaskMarket {
    /// @notice Seconds the requester has to name a validator after the result, and to finalize after an accept.
    uint256 public immutable reviewWindow;
    /// @notice Seconds a named validator has to submit its verdict.
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
    }

    Counters private _counters;
    mapping(uint256 taskId => StoredTask) private _tasks;
    mapping(address worker => Worker) private _workers;
    mapping(uint32 id => address worker) private _workerAt;
    mapping(uint256 taskId => bytes32 resultHash) private _resultOf;
    mapping(address account => uint256 creditPlusOne) private _credits;
    mapping(uint256 position => uint256 taskId) private _openTaskAt;
    mapping(uint256 position => address worker) private _availableWorkerAt;

    uint256 private constant _LOCK_SLOT = uint256(keccak256("ichain.TaskMarket.lock")) - 1;

    /// @param reviewWindow_ Seconds to name a validator after the result, and to finalize after an accept.
    /// @param validationWindow_ Seconds a validator has for its verdict.
    /// @param minTimeout_ Smallest per-task execution timeout.
    /// @param maxTimeout_ Largest per-task execution timeout (fits in uint24).
    constructor(uint256 reviewWindow_, uint256 validationWindow_, uint256 minTimeout_, uint256 maxTimeout_) {
        if (
            reviewWindow_ == 0 || validationWindow_ == 0 || minTimeout_ == 0 || minTimeout_ > maxTimeout_
                || maxTimeout_ > type(uint24).max || reviewWindow_ > type(uint24).max
                || validationWindow_ > type(uint24).max
        ) revert TaskMarket__InvalidWindows();
        reviewWindow = reviewWindow_;
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
            // ids are permanent: a worker that leaves and comes back keeps its id
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
        emit WorkerLeft(msg.sender);
    }

    // ================================================================== task lifecycle

    /// @inheritdoc ITaskMarket
    function post(
        bytes32 taskHash,
        Terms calldata terms,
        bytes calldata providerLocator,
        bytes calldata validatorLocator
    ) external payable returns (uint256 taskId) {
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
            providerLocator,
            validatorLocator
        );
    }

    /// @inheritdoc ITaskMarket
    function assignProvider(uint256 taskId, address provider, bytes calldata locator) external {
        StoredTask storage t = _requesterTask(taskId);
        if (t.status != Status.Pending) revert TaskMarket__WrongState(taskId, t.status);
        uint96 price = t.price;
        uint32 providerId = _checkProvider(provider, t.validatorId, price);

        uint32 deadline = uint32(block.timestamp + t.timeout);
        t.status = Status.Executing;
        t.deadline = deadline;
        t.providerId = providerId;
        emit ProviderAssigned(taskId, provider, msg.sender, price, deadline, locator);
    }

    /// @inheritdoc ITaskMarket
    function assignValidator(uint256 taskId, address validator, bytes32 resultHash, bytes calldata locator)
        external
    {
        StoredTask storage t = _requesterTask(taskId);
        Status status = t.status;
        if (status == Status.AwaitingValidator) {
            if (block.timestamp > t.deadline) revert TaskMarket__DeadlinePassed(taskId, t.deadline);
        } else if (status == Status.Validating) {
            // a named validator keeps its whole window; only a silent one can be replaced
            if (block.timestamp <= t.deadline) revert TaskMarket__DeadlineNotReached(taskId, t.deadline);
        } else {
            revert TaskMarket__WrongState(taskId, status);
        }
        uint32 validatorId = _checkValidator(validator, t.providerId, t.validatorId);
        if (_resultOf[taskId] != resultHash) revert TaskMarket__WrongResult(taskId, resultHash);

        uint32 deadline = uint32(block.timestamp + validationWindow);
        t.status = Status.Validating;
        t.deadline = deadline;
        t.validatorId = validatorId;
        emit ValidatorAssigned(taskId, validator, msg.sender, resultHash, t.validatorFee, deadline, locator);
    }

    /// @inheritdoc ITaskMarket
    function submitResult(
        uint256 taskId,
        bytes32 resultHash,
        bytes calldata requesterLocator,
        bytes calldata validatorLocator
    ) external {
        (address validator, address requester, uint32 deadline) = _commitResult(taskId, resultHash);
        emit ResultSubmitted(
            taskId, msg.sender, validator, requester, resultHash, deadline, requesterLocator, validatorLocator
        );
    }

    /// @inheritdoc ITaskMarket
    function submitVerdict(uint256 taskId, bytes32 resultHash, bool accept) external {
        StoredTask storage t = _tasks[taskId];
        Status status = t.status;
        if (status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        uint32 callerId = _workers[msg.sender].id;
        if (callerId == 0 || callerId != t.validatorId) revert TaskMarket__NotValidator(taskId, msg.sender);
        if (status != Status.Validating) revert TaskMarket__WrongState(taskId, status);
        if (block.timestamp > t.deadline) revert TaskMarket__DeadlinePassed(taskId, t.deadline);
        if (_resultOf[taskId] != resultHash) revert TaskMarket__WrongResult(taskId, resultHash);

        uint96 fee = t.validatorFee;
        address requester = t.requester;
        uint32 deadline;
        if (accept) {
            deadline = uint32(block.timestamp + reviewWindow);
            t.status = Status.Accepted;
            t.deadline = deadline;
        } else {
            t.status = Status.Rejected;
            _removeOpen(t.poolIndex);
            _credit(requester, t.price);
        }
        _credit(msg.sender, fee);
        emit VerdictSubmitted(taskId, msg.sender, requester, resultHash, accept, fee, deadline);
    }

    /// @inheritdoc ITaskMarket
    function finalize(uint256 taskId, uint8 rating) external {
        StoredTask storage t = _requesterTask(taskId);
        if (rating == 0 || rating > 5) revert TaskMarket__InvalidRating(rating);
        Status status = t.status;
        uint96 paid;
        address provider;
        if (status == Status.Accepted) {
            paid = t.price;
            provider = _workerAt[t.providerId];
            t.status = Status.Completed;
            _removeOpen(t.poolIndex);
            _credit(provider, paid);
        } else if (status == Status.Rejected) {
            provider = _workerAt[t.providerId];
            t.status = Status.Closed;
        } else {
            revert TaskMarket__WrongState(taskId, status);
        }
        emit TaskFinalized(taskId, provider, msg.sender, rating, paid);
        // trusted contract deployed by this one; called last (checks-effects-interactions)
        ratings.rate(provider, taskId, msg.sender, rating);
    }

    /// @inheritdoc ITaskMarket
    function cancel(uint256 taskId) external {
        StoredTask storage t = _requesterTask(taskId);
        if (t.status != Status.Pending) revert TaskMarket__WrongState(taskId, t.status);
        uint256 refund = uint256(t.price) + t.validatorFee;
        t.status = Status.Cancelled;
        _removeOpen(t.poolIndex);
        _credit(msg.sender, refund);
        emit TaskCancelled(taskId, msg.sender, refund);
    }

    /// @inheritdoc ITaskMarket
    function expire(uint256 taskId) external {
        StoredTask storage t = _tasks[taskId];
        Status status = t.status;
        if (status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        if (uint8(status) >= uint8(Status.Rejected)) revert TaskMarket__WrongState(taskId, status);
        if (block.timestamp <= t.deadline) revert TaskMarket__DeadlineNotReached(taskId, t.deadline);

        address requester = t.requester;
        address provider = _workerAt[t.providerId]; // address(0) while Pending
        uint256 price = t.price;
        uint256 refund;
        uint256 payout;
        if (status == Status.AwaitingValidator) {
            // the requester had the result and named no validator: the provider is paid, the fee goes back
            payout = price;
            refund = t.validatorFee;
        } else if (status == Status.Accepted) {
            // the validator was already paid; the requester cannot back out of paying
            payout = price;
        } else {
            // Pending, Executing (silent provider), Validating (silent validator): full refund
            refund = price + t.validatorFee;
        }
        t.status = Status.Expired;
        _removeOpen(t.poolIndex);
        if (refund != 0) _credit(requester, refund);
        if (payout != 0) _credit(provider, payout);
        emit TaskExpired(taskId, requester, provider, status, refund, payout);
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
    function resultOf(uint256 taskId) external view returns (bytes32) {
        return _resultOf[taskId];
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
            ids[i - cursor] = _openTaskAt[i];
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
            uint256 id = _openTaskAt[i];
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
        uint32 validatorId = terms.validator == address(0) ? 0 : _checkValidator(terms.validator, 0, 0);
        uint32 providerId = terms.provider == address(0) ? 0 : _checkProvider(terms.provider, validatorId, price);

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

    /// @dev Checks and records the provider's result commitment (out of submitResult() for the stack).
    function _commitResult(uint256 taskId, bytes32 resultHash)
        private
        returns (address validator, address requester, uint32 deadline)
    {
        StoredTask storage t = _tasks[taskId];
        Status status = t.status;
        if (status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        uint32 callerId = _workers[msg.sender].id;
        if (callerId == 0 || callerId != t.providerId) revert TaskMarket__NotProvider(taskId, msg.sender);
        if (status != Status.Executing) revert TaskMarket__WrongState(taskId, status);
        if (block.timestamp > t.deadline) revert TaskMarket__DeadlinePassed(taskId, t.deadline);
        if (resultHash == bytes32(0)) revert TaskMarket__ZeroResultHash();

        _resultOf[taskId] = resultHash;
        uint32 validatorId = t.validatorId;
        if (validatorId == 0) {
            deadline = uint32(block.timestamp + reviewWindow);
            t.status = Status.AwaitingValidator;
        } else {
            validator = _workerAt[validatorId];
            deadline = uint32(block.timestamp + validationWindow);
            t.status = Status.Validating;
        }
        t.deadline = deadline;
        requester = t.requester;
    }

    function _requesterTask(uint256 taskId) private view returns (StoredTask storage t) {
        t = _tasks[taskId];
        if (t.status == Status.None) revert TaskMarket__TaskNotFound(taskId);
        if (msg.sender != t.requester) revert TaskMarket__NotRequester(taskId, msg.sender);
    }

    /// @dev An available registered worker asking <= price, not the requester (msg.sender) nor the validator.
    function _checkProvider(address provider, uint32 validatorId, uint96 price) private view returns (uint32 id) {
        if (provider == address(0) || provider == msg.sender) revert TaskMarket__InvalidProvider(provider);
        Worker storage w = _workers[provider];
        if (!w.registered) revert TaskMarket__NotAWorker(provider);
        if (!w.available) revert TaskMarket__WorkerUnavailable(provider);
        if (w.price > price) revert TaskMarket__PriceTooLow(provider, w.price, price);
        id = w.id;
        if (id == validatorId) revert TaskMarket__InvalidProvider(provider);
    }

    /// @dev An available registered worker, not the requester (msg.sender), the provider nor the current validator.
    function _checkValidator(address validator, uint32 providerId, uint32 currentId) private view returns (uint32 id) {
        if (validator == address(0) || validator == msg.sender) revert TaskMarket__InvalidValidator(validator);
        Worker storage w = _workers[validator];
        if (!w.registered) revert TaskMarket__NotAWorker(validator);
        if (!w.available) revert TaskMarket__WorkerUnavailable(validator);
        id = w.id;
        if (id == providerId || id == currentId) revert TaskMarket__InvalidValidator(validator);
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

    /// @dev Swap-and-pop removal from the open-task set; the popped slot is left dirty (see contract doc).
    function _removeOpen(uint32 position) private {
        uint32 last = _counters.openTasks - 1;
        if (position != last) {
            uint256 moved = _openTaskAt[last];
            _openTaskAt[position] = moved;
            _tasks[moved].poolIndex = position;
        }
        _counters.openTasks = last;
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
