// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestBase} from "./Vm.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {Ratings} from "../../contracts/Ratings.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {IRatings} from "../../contracts/interfaces/IRatings.sol";
import {ReentrantPayee} from "../../contracts/test/ReentrantPayee.sol";
import {RevertingPayee} from "../../contracts/test/RevertingPayee.sol";
import {ForceFeeder} from "../../contracts/test/ForceFeeder.sol";

/// @notice Targeted attack scenarios and every guard of both contracts (the campaign's random walk reaches most
///         of them; these make sure each one is hit and answers with the right custom error).
contract TaskMarketAttacks is TestBase {
    TaskMarket internal market;
    address internal requester = address(0xA11CE);
    address internal provider = address(0xB0B);
    address internal validator = address(0x7A1);
    address internal other = address(0x07E4);
    address internal outsider = address(0xBAD);
    uint96 internal constant PRICE = 1 ether;
    uint96 internal constant FEE = 0.1 ether;
    uint24 internal constant TIMEOUT = 100;

    function setUp() public {
        vm.warp(1_000_000);
        market = new TaskMarket(50, 60, 10, 300);
        _register(provider, 0.5 ether);
        _register(validator, 0);
        _register(other, 0);
        vm.deal(requester, 100 ether);
    }

    // ------------------------------------------------------------------ helpers

    function _register(address w, uint96 price) internal {
        vm.prank(w);
        market.register(keccak256(abi.encode(w)), price, true);
    }

    function _terms(address p, address v) internal pure returns (ITaskMarket.Terms memory) {
        return ITaskMarket.Terms({provider: p, validator: v, price: PRICE, validatorFee: FEE, timeout: TIMEOUT});
    }

    function _post(address p, address v) internal returns (uint256 id) {
        vm.prank(requester);
        id = market.post{value: PRICE + FEE}(keccak256("task"), _terms(p, v), "", "");
    }

    function _result(uint256 id, bytes32 h) internal {
        vm.prank(provider);
        market.submitResult(id, h, "", "");
    }

    function _status(uint256 id) internal view returns (ITaskMarket.Status) {
        return market.getTask(id).status;
    }

    // ------------------------------------------------------------------ attacks

    /// A payee that re-enters withdraw from its receive hook gets its credit once, never twice.
    function test_withdraw__reentrantPayee__reentryRefusedPaidOnce() public {
        ReentrantPayee attacker = new ReentrantPayee(address(market));
        vm.prank(address(attacker));
        market.register(keccak256("attacker"), 0, true);
        uint256 id = _post(address(attacker), validator);
        vm.prank(address(attacker));
        market.submitResult(id, keccak256("r"), "", "");
        vm.prank(validator);
        market.submitVerdict(id, keccak256("r"), true);
        vm.prank(requester);
        market.finalize(id, 5);
        // leave only the attacker's own credit in the market: a second payout would have to come from nowhere
        vm.prank(validator);
        market.withdraw();

        attacker.setAttack(abi.encodeCall(TaskMarket.withdraw, ()));
        uint256 before = address(attacker).balance;
        vm.prank(address(attacker));
        market.withdraw();
        assertEq(address(attacker).balance - before, PRICE, "attacker paid once");
        assertEq(attacker.attempts(), 1, "attempted");
        assertEq(attacker.successes(), 0, "re-entry refused");
        assertTrue(attacker.lastError() == ITaskMarket.TaskMarket__Reentrancy.selector, "refused by the lock");
        assertEq(address(market).balance, 0, "market empty");

        // re-entering through withdrawTo is refused the same way
        attacker.setAttack(abi.encodeCall(TaskMarket.withdrawTo, (payable(address(attacker)))));
        uint256 id3 = _post(address(0), address(0));
        vm.prank(requester);
        market.assignProvider(id3, address(attacker), "");
        vm.prank(address(attacker));
        market.submitResult(id3, keccak256("r3"), "", "");
        vm.warp(block.timestamp + 51);
        market.expire(id3); // the requester named no validator: the provider is paid
        vm.prank(address(attacker));
        market.withdraw();
        assertEq(attacker.successes(), 0, "re-entry through withdrawTo refused");
        assertTrue(attacker.lastError() == ITaskMarket.TaskMarket__Reentrancy.selector, "refused by the lock");
    }

    /// A payee that refuses ether cannot block anyone: its own withdraw fails and keeps its credit; others
    /// withdraw normally; it can still send its credit elsewhere.
    function test_withdraw__revertingPayee__othersUnaffected() public {
        RevertingPayee payee = new RevertingPayee(address(market));
        vm.prank(address(payee));
        market.register(keccak256("payee"), 0, true);
        uint256 id = _post(address(payee), validator);
        vm.prank(address(payee));
        market.submitResult(id, keccak256("r"), "", "");
        vm.prank(validator);
        market.submitVerdict(id, keccak256("r"), true);
        vm.prank(requester);
        market.finalize(id, 4);

        vm.prank(address(payee));
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TransferFailed.selector, address(payee), PRICE));
        market.withdraw();
        assertEq(market.creditOf(address(payee)), PRICE, "credit kept after a failed withdraw");

        uint256 before = validator.balance;
        vm.prank(validator);
        market.withdraw();
        assertEq(validator.balance - before, FEE, "the validator is paid regardless");

        address wallet = address(0xCAFE);
        vm.prank(address(payee));
        market.withdrawTo(payable(wallet));
        assertEq(wallet.balance, PRICE, "credit recovered through withdrawTo");
        assertEq(address(market).balance, 0, "market empty");
    }

    /// Ether forced in by selfdestruct is nobody's credit and breaks no accounting: every task still settles.
    function test_forceFeed__selfdestruct__accountingUnbroken() public {
        uint256 id = _post(provider, validator);
        ForceFeeder feeder = new ForceFeeder{value: 3 ether}();
        feeder.feed(payable(address(market)));
        assertEq(address(market).balance, PRICE + FEE + 3 ether, "forced in");
        _result(id, keccak256("r"));
        vm.prank(validator);
        market.submitVerdict(id, keccak256("r"), false);
        vm.prank(requester);
        market.finalize(id, 1);
        assertEq(market.creditOf(requester), PRICE, "requester refunded the price only");
        assertEq(market.creditOf(validator), FEE, "validator paid the fee only");
        vm.prank(requester);
        market.withdraw();
        vm.prank(validator);
        market.withdraw();
        assertEq(address(market).balance, 3 ether, "only the forced ether remains");
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NothingToWithdraw.selector, outsider));
        market.withdraw();
    }

    /// A copier (another provider) replaying a committed result hash commits it to its own task only: the honest
    /// task keeps its commitment and is paid; the copied task is bound to its own commitment and, judged on its own
    /// (the package names another task), rejected: the copier gets nothing.
    function test_submitResult__copierReplaysCommitment__boundToItsOwnTask() public {
        address copier = address(0xC0C0);
        _register(copier, 0);
        uint256 honest = _post(provider, address(0));
        uint256 copied = _post(copier, address(0));
        bytes32 h = keccak256("honest result");
        _result(honest, h);
        vm.prank(copier);
        market.submitResult(copied, h, "", "");
        assertTrue(market.resultOf(honest) == h, "honest commitment kept");
        assertTrue(market.resultOf(copied) == h, "copied commitment bound to the copier's task");
        // once per task
        vm.prank(copier);
        vm.expectRevert(
            abi.encodeWithSelector(
                ITaskMarket.TaskMarket__WrongState.selector, copied, ITaskMarket.Status.AwaitingValidator
            )
        );
        market.submitResult(copied, keccak256("copier's second try"), "", "");
        // each task binds only its own commitment
        bytes32 other = keccak256("other");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongResult.selector, honest, other));
        market.assignValidator(honest, validator, other, "");
        vm.prank(requester);
        market.assignValidator(honest, validator, h, "");
        vm.prank(requester);
        market.assignValidator(copied, validator, h, "");
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongResult.selector, copied, other));
        market.submitVerdict(copied, other, true);

        vm.prank(validator);
        market.submitVerdict(honest, h, true);
        vm.prank(validator);
        market.submitVerdict(copied, h, false); // the package's meta.json names the honest task
        vm.prank(requester);
        market.finalize(honest, 5);
        vm.prank(requester);
        market.finalize(copied, 1);
        assertEq(market.creditOf(provider), PRICE, "honest provider paid");
        assertEq(market.creditOf(copier), 0, "copier paid nothing");
        assertEq(market.creditOf(requester), PRICE, "copied task's price refunded");
    }

    /// An outsider calling every state-changing function on every task state is refused with the right error.
    function test_everyFunction__outsider__refusedWithCustomError() public {
        uint256 id = _post(provider, address(0));
        vm.startPrank(outsider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotRequester.selector, id, outsider));
        market.assignProvider(id, provider, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotRequester.selector, id, outsider));
        market.assignValidator(id, validator, bytes32(0), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, id, outsider));
        market.submitResult(id, keccak256("x"), "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotValidator.selector, id, outsider));
        market.submitVerdict(id, keccak256("x"), true);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotRequester.selector, id, outsider));
        market.finalize(id, 5);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotRequester.selector, id, outsider));
        market.cancel(id);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlineNotReached.selector, id, 1_000_000 + 100));
        market.expire(id);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NothingToWithdraw.selector, outsider));
        market.withdraw();
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NothingToWithdraw.selector, outsider));
        market.withdrawTo(payable(outsider));
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.update(keccak256("k"), 0, true);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.leave();
        IRatings ratings = market.ratings();
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__NotMarket.selector, outsider));
        ratings.rate(provider, id, outsider, 5);
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__NotMarket.selector, outsider));
        ratings.track(outsider);
        // unknown tasks
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.submitResult(99, keccak256("x"), "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.submitVerdict(99, keccak256("x"), true);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.expire(99);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.cancel(99);
        vm.stopPrank();
        // the outsider's calls changed nothing
        assertTrue(_status(id) == ITaskMarket.Status.Executing, "state unchanged");
        assertEq(address(market).balance, PRICE + FEE, "escrow unchanged");
    }

    // ------------------------------------------------------------------ every silent party has a rule

    function test_expire__silentProvider__requesterRefunded() public {
        uint256 id = _post(provider, validator);
        vm.warp(block.timestamp + TIMEOUT + 1);
        vm.prank(outsider);
        market.expire(id);
        assertEq(market.creditOf(requester), PRICE + FEE, "full refund");
    }

    function test_expire__pendingUnassigned__requesterRefunded() public {
        uint256 id = _post(address(0), address(0));
        vm.warp(block.timestamp + TIMEOUT + 1);
        market.expire(id);
        assertEq(market.creditOf(requester), PRICE + FEE, "full refund");
    }

    function test_expire__silentValidator__refundedOrReplaced() public {
        uint256 id = _post(provider, validator);
        _result(id, keccak256("r"));
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlineNotReached.selector, id, block.timestamp + 60));
        market.assignValidator(id, other, keccak256("r"), "");
        vm.warp(block.timestamp + 61);
        vm.prank(requester);
        market.assignValidator(id, other, keccak256("r"), ""); // replaced the silent validator
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotValidator.selector, id, validator));
        market.submitVerdict(id, keccak256("r"), true);
        vm.warp(block.timestamp + 61);
        market.expire(id);
        assertEq(market.creditOf(requester), PRICE + FEE, "refund after the second silence");
        assertEq(market.creditOf(validator) + market.creditOf(other) + market.creditOf(provider), 0, "nobody else");
    }

    function test_expire__noValidatorNamed__providerPaidFeeBack() public {
        uint256 id = _post(provider, address(0));
        _result(id, keccak256("r"));
        vm.warp(block.timestamp + 51);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlinePassed.selector, id, block.timestamp - 1));
        market.assignValidator(id, validator, keccak256("r"), "");
        market.expire(id);
        assertEq(market.creditOf(provider), PRICE, "provider paid");
        assertEq(market.creditOf(requester), FEE, "unspent fee back");
    }

    function test_expire__silentRequesterAfterAccept__providerPaid() public {
        uint256 id = _post(provider, validator);
        _result(id, keccak256("r"));
        vm.prank(validator);
        market.submitVerdict(id, keccak256("r"), true);
        vm.warp(block.timestamp + 51);
        market.expire(id);
        assertEq(market.creditOf(provider), PRICE, "provider paid");
        assertEq(market.creditOf(validator), FEE, "validator paid");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Expired));
        market.finalize(id, 1);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Expired));
        market.expire(id);
    }

    // ------------------------------------------------------------------ guards of the happy path

    function test_lifecycle__guards__eachRefusedWithItsError() public {
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ZeroTaskHash.selector));
        market.post{value: PRICE + FEE}(bytes32(0), _terms(provider, validator), "", "");
        ITaskMarket.Terms memory t = _terms(provider, validator);
        t.timeout = 5;
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TimeoutOutOfBounds.selector, 5, 10, 300));
        market.post{value: PRICE + FEE}(keccak256("t"), t, "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongDeposit.selector, PRICE + FEE, PRICE));
        market.post{value: PRICE}(keccak256("t"), _terms(provider, validator), "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, requester));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(requester, validator), "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, requester));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, requester), "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, validator));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(validator, validator), "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(outsider, validator), "", "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, outsider), "", "");
        t = _terms(provider, validator);
        t.price = 0.1 ether;
        vm.expectRevert(
            abi.encodeWithSelector(ITaskMarket.TaskMarket__PriceTooLow.selector, provider, 0.5 ether, 0.1 ether)
        );
        market.post{value: 0.1 ether + FEE}(keccak256("t"), t, "", "");
        vm.stopPrank();
        vm.prank(other);
        market.update(keccak256("o"), 0, false);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WorkerUnavailable.selector, other));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(other, validator), "", "");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WorkerUnavailable.selector, other));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, other), "", "");

        uint256 id = _post(address(0), validator);
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, address(0)));
        market.assignProvider(id, address(0), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, validator));
        market.assignProvider(id, validator, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Pending));
        market.assignValidator(id, other, bytes32(0), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Pending));
        market.finalize(id, 3);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidRating.selector, 0));
        market.finalize(id, 0);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidRating.selector, 6));
        market.finalize(id, 6);
        market.assignProvider(id, provider, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Executing));
        market.assignProvider(id, provider, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Executing));
        market.cancel(id);
        vm.stopPrank();

        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Executing));
        market.submitVerdict(id, keccak256("r"), true);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ZeroResultHash.selector));
        market.submitResult(id, bytes32(0), "", "");
        _result(id, keccak256("r"));
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Validating));
        market.submitResult(id, keccak256("r2"), "", "");
        vm.warp(block.timestamp + 61);
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlinePassed.selector, id, block.timestamp - 1));
        market.submitVerdict(id, keccak256("r"), true);
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, address(0)));
        market.assignValidator(id, address(0), keccak256("r"), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, validator));
        market.assignValidator(id, validator, keccak256("r"), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, provider));
        market.assignValidator(id, provider, keccak256("r"), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, requester));
        market.assignValidator(id, requester, keccak256("r"), "");
        vm.stopPrank();

        uint256 late = _post(provider, address(0));
        vm.warp(block.timestamp + TIMEOUT + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlinePassed.selector, late, block.timestamp - 1));
        market.submitResult(late, keccak256("late"), "", "");
    }

    function test_finalize__afterReject__closedAndRated() public {
        uint256 id = _post(provider, validator);
        _result(id, keccak256("r"));
        vm.prank(validator);
        market.submitVerdict(id, keccak256("r"), false);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Rejected));
        market.expire(id);
        vm.prank(requester);
        market.finalize(id, 2);
        assertTrue(_status(id) == ITaskMarket.Status.Closed, "closed");
        (uint256 sum, uint256 count, uint256 avg) = market.ratings().stats(provider);
        assertEq(sum, 2, "sum");
        assertEq(count, 1, "count");
        assertEq(avg, 2000, "average");
        assertEq(market.openTaskCount(), 0, "no open task");
    }

    // ------------------------------------------------------------------ registry and pools

    function test_registry__joinLeaveRejoin__poolsConsistent() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__AlreadyRegistered.selector, provider));
        market.register(keccak256("k"), 0, true);
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ZeroKey.selector));
        market.register(bytes32(0), 0, true);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ZeroKey.selector));
        market.update(bytes32(0), 0, true);
        assertEq(market.availableWorkerCount(), 3, "three available");
        vm.prank(provider); // first of the pool leaves: the last one is swapped in
        market.leave();
        assertEq(market.availableWorkerCount(), 2, "two available");
        vm.prank(other); // the last one goes unavailable
        market.update(keccak256("o2"), 1, false);
        vm.prank(other); // no change
        market.update(keccak256("o3"), 1, false);
        vm.prank(other); // unavailable worker leaves
        market.leave();
        vm.prank(outsider); // registered but unavailable
        market.register(keccak256("out"), 0, false);
        vm.prank(outsider); // becomes available
        market.update(keccak256("out2"), 0, true);
        // re-register keeps the old id
        uint32 oldId = market.getWorker(provider).id;
        vm.prank(provider);
        market.register(keccak256("again"), 0, true);
        assertEq(market.getWorker(provider).id, oldId, "permanent id");
        assertEq(market.workerAddress(oldId), provider, "id resolves");
        vm.prank(provider); // still available: no change
        market.update(keccak256("again"), 2, true);
        address[] memory page = market.availableWorkers(0, 10);
        assertEq(page.length, 3, "validator, outsider and provider available");
        assertEq(market.availableWorkers(5, 10).length, 0, "past the end");
        assertEq(market.availableWorkers(0, 1).length, 1, "limited page");
    }

    function test_pools__openTasksPaged__statusFilter() public {
        uint256 a = _post(address(0), address(0));
        uint256 b = _post(provider, address(0));
        uint256 c = _post(address(0), validator);
        assertEq(market.openTaskCount(), 3, "three open");
        (uint256[] memory pending, uint256 next) = market.tasksInStatus(ITaskMarket.Status.Pending, 0, 10);
        assertEq(pending.length, 2, "two pending");
        assertEq(next, 3, "scanned all");
        (uint256[] memory none, uint256 next2) = market.tasksInStatus(ITaskMarket.Status.Pending, 7, 10);
        assertEq(none.length + next2, 7, "past the end");
        vm.prank(requester);
        market.cancel(a); // first leaves: last swapped in
        uint256[] memory ids = market.openTasks(0, 10);
        assertEq(ids.length, 2, "two open");
        assertEq(ids[0], c, "swapped");
        assertEq(ids[1], b, "kept");
        assertEq(market.openTasks(1, 1).length, 1, "limited page");
        assertEq(market.openTasks(9, 1).length, 0, "past the end");
        vm.prank(requester);
        market.cancel(c);
        assertEq(market.lastTaskId(), 3, "ids");
    }

    // ------------------------------------------------------------------ Ratings in isolation (we are its market)

    function test_ratings__direct__onlyMarketValidRange() public {
        Ratings r = new Ratings();
        assertEq(uint160(r.market()), uint160(address(this)), "deployer is the market");
        r.track(provider);
        r.track(provider); // idempotent
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__InvalidRating.selector, 0));
        r.rate(provider, 1, requester, 0);
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__InvalidRating.selector, 6));
        r.rate(provider, 1, requester, 6);
        (,, uint256 avg0) = r.stats(provider);
        assertEq(avg0, 0, "no rating yet");
        r.rate(provider, 1, requester, 5);
        r.rate(provider, 2, requester, 4);
        (uint256 sum, uint256 count, uint256 avg) = r.stats(provider);
        assertEq(sum, 9, "sum");
        assertEq(count, 2, "count");
        assertEq(avg, 4500, "average");
    }

    function test_constructor__invalidWindows__reverts() public {
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidWindows.selector));
        new TaskMarket(0, 60, 10, 300);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidWindows.selector));
        new TaskMarket(50, 60, 301, 300);
    }
}
