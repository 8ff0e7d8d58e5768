// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestBase, Vm} from "./Vm.sol";
import {TaskMarket} from "../../contracts/TaskMarket.sol";
import {Ratings} from "../../contracts/Ratings.sol";
import {ITaskMarket} from "../../contracts/interfaces/ITaskMarket.sol";
import {IRatings} from "../../contracts/interfaces/IRatings.sol";
import {ReentrantPayee} from "../../contracts/test/ReentrantPayee.sol";
import {RevertingPayee} from "../../contracts/test/RevertingPayee.sol";
import {ForceFeeder} from "../../contracts/test/ForceFeeder.sol";

/// @notice The on-chain paths of the fair-exchange attack table (1a, 1b, 1d, 1e, 2a, 2c, 2d, M5), the money of
///         every settlement (decline included), the published offers, and every guard of both contracts (the campaign's random walk reaches most of them;
///         these make sure each one is hit and answers with the right custom error).
contract TaskMarketAttacks is TestBase {
    TaskMarket internal market;
    IRatings internal ratings;
    address internal requester = address(0xA11CE);
    address internal provider = address(0xB0B);
    address internal validator = address(0x7A1);
    address internal other = address(0x07E4);
    address internal outsider = address(0xBAD);
    uint96 internal constant PRICE = 1 ether;
    uint96 internal constant FEE = 0.1 ether;
    uint96 internal constant ASKING = 0.5 ether;
    uint24 internal constant TIMEOUT = 100;
    uint256 internal constant WINDOW = 60;
    // derived as the contract derives them (1% burn, collateral = fee + 10% of the price, failure fee 10%)
    uint256 internal constant COLLATERAL = FEE + PRICE / 10;
    uint256 internal constant PRICE_BURN = PRICE / 100;
    uint256 internal constant FEE_BURN = FEE / 100;
    uint256 internal constant FAILURE_FEE = PRICE / 10;
    bytes internal constant REPORT = hex"0102030405";

    function setUp() public {
        vm.warp(1_000_000);
        market = new TaskMarket(WINDOW, 10, 300);
        ratings = market.ratings();
        _register(provider, ASKING);
        _register(validator, 0);
        _register(other, 0);
        _trust(provider, validator);
        vm.deal(requester, 100 ether);
        vm.deal(provider, 100 ether);
        vm.deal(other, 100 ether);
    }

    // ------------------------------------------------------------------ helpers

    function _register(address w, uint96 price) internal {
        vm.prank(w);
        market.register(keccak256(abi.encode(w)), price, true);
    }

    function _trust(address p, address v) internal {
        vm.prank(p);
        market.setTrust(v, true);
    }

    function _terms(address p, address v) internal pure returns (ITaskMarket.Terms memory) {
        return ITaskMarket.Terms({provider: p, validator: v, price: PRICE, validatorFee: FEE, timeout: TIMEOUT});
    }

    function _post(address p, address v) internal returns (uint256 id) {
        vm.prank(requester);
        id = market.post{value: PRICE + FEE}(keccak256("task"), _terms(p, v), "task locator");
    }

    function _result(uint256 id, bytes32 h) internal {
        _resultBy(provider, id, h);
    }

    function _resultBy(address p, uint256 id, bytes32 h) internal {
        vm.deal(p, p.balance + COLLATERAL);
        vm.prank(p);
        market.submitResult{value: COLLATERAL}(id, h, "validator locator");
    }

    function _verdict(uint256 id, bytes32 h, bool accept) internal {
        vm.prank(validator);
        market.submitVerdict(id, h, accept, "requester locator");
    }

    function _status(uint256 id) internal view returns (ITaskMarket.Status) {
        return market.getTask(id).status;
    }

    /// @dev balance == open escrow (price + fee) + collateral of Validating tasks + credits + burned (+ forced)
    function _assertBooks(address[] memory accounts, uint256 forced) internal view {
        uint256 held = market.burned() + forced;
        for (uint256 i = 0; i < accounts.length; i++) {
            held += market.creditOf(accounts[i]);
        }
        uint256[] memory open = market.openTasks(0, 100);
        for (uint256 i = 0; i < open.length; i++) {
            ITaskMarket.Task memory t = market.getTask(open[i]);
            held += uint256(t.price) + t.validatorFee;
            if (t.status == ITaskMarket.Status.Validating) held += market.collateralFor(t.price, t.validatorFee);
        }
        assertEq(address(market).balance, held, "balance != escrow + collateral + credits + burned");
    }

    function _parties() internal view returns (address[] memory a) {
        a = new address[](5);
        (a[0], a[1], a[2], a[3], a[4]) = (requester, provider, validator, other, outsider);
    }

    function _countLogs(Vm.Log[] memory logs, bytes32 topic) internal pure returns (uint256 n) {
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].topics.length != 0 && logs[i].topics[0] == topic) n++;
        }
    }

    // ------------------------------------------------------------------ the honest paths and their money

    /// The happy path: nothing opens the result for the requester before the accept; the accept pays the
    /// provider (price less 1% plus its collateral back) and the validator (fee less 1%), burns 1% of both, and
    /// releases the requester's locator in the same transaction.
    function test_lifecycle__accept__paidAndDeliveredInOneStep() public {
        vm.recordLogs();
        uint256 id = _post(provider, validator);
        assertTrue(_status(id) == ITaskMarket.Status.Executing, "executing");
        _result(id, keccak256("r"));
        assertTrue(_status(id) == ITaskMarket.Status.Validating, "validating");
        assertTrue(market.resultOf(id) == _commitment(keccak256("r")), "commitment");
        assertEq(address(market).balance, PRICE + FEE + COLLATERAL, "escrow + collateral held");
        Vm.Log[] memory before = vm.getRecordedLogs();
        assertEq(_countLogs(before, ITaskMarket.VerdictSubmitted.selector), 0, "no requester locator before the verdict");

        vm.recordLogs();
        _verdict(id, keccak256("r"), true);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_countLogs(logs, ITaskMarket.VerdictSubmitted.selector), 1, "the locator is released with the accept");
        (,,,,, bytes memory loc) = abi.decode(logs[0].data, (bytes32, bool, uint256, uint256, uint256, bytes));
        assertTrue(keccak256(loc) == keccak256("requester locator"), "requester locator emitted");
        assertTrue(_status(id) == ITaskMarket.Status.Completed, "completed");
        assertEq(market.creditOf(provider), PRICE - PRICE_BURN + COLLATERAL, "provider paid + collateral back");
        assertEq(market.creditOf(validator), FEE - FEE_BURN, "validator paid");
        assertEq(market.creditOf(requester), 0, "requester paid");
        assertEq(market.burned(), PRICE_BURN + FEE_BURN, "1% of both burned");
        assertEq(market.openTaskCount(), 0, "settled");
        _assertBooks(_parties(), 0);

        vm.prank(requester);
        market.rate(id, 5, 4);
        assertTrue(_status(id) == ITaskMarket.Status.Rated, "rated");
        IRatings.Record memory p = ratings.recordOf(provider, IRatings.Role.Provider);
        IRatings.Record memory v = ratings.recordOf(validator, IRatings.Role.Validator);
        assertEq(p.count, 1, "provider count");
        assertEq(p.weightGwei, (PRICE - PRICE_BURN) / 1 gwei, "provider weight = wei paid");
        assertEq(p.weightedGwei, 5 * p.weightGwei, "provider weighted");
        assertEq(v.count, 1, "validator count");
        assertEq(v.weightGwei, (FEE - FEE_BURN) / 1 gwei, "validator weight = fee paid");
        assertEq(ratings.recordOf(provider, IRatings.Role.Validator).count, 0, "roles kept apart");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Rated));
        market.rate(id, 5, 5);
    }

    /// 2d and garbage results: a reject refunds the requester (who never held the result), pays the validator out
    /// of the provider's collateral and burns the rest; the provider gets nothing and loses its collateral.
    function test_submitVerdict__reject__collateralPaysJudgeRestBurned() public {
        uint256 id = _post(provider, validator);
        _result(id, keccak256("garbage"));
        vm.recordLogs();
        _verdict(id, keccak256("garbage"), false);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        (,, uint256 providerPaid, uint256 validatorPaid, uint256 burn, bytes memory loc) =
            abi.decode(logs[0].data, (bytes32, bool, uint256, uint256, uint256, bytes));
        assertEq(loc.length, 0, "no locator on a reject");
        assertEq(providerPaid, 0, "provider paid nothing");
        assertEq(validatorPaid, FEE - FEE_BURN, "validator paid from the collateral");
        assertEq(burn, COLLATERAL - (FEE - FEE_BURN), "rest of the collateral burned");
        assertTrue(_status(id) == ITaskMarket.Status.Rejected, "rejected");
        assertEq(market.creditOf(requester), PRICE + FEE, "requester refunded price + fee");
        assertEq(market.creditOf(validator), FEE - FEE_BURN, "the loser paid the judge");
        assertEq(market.creditOf(provider), 0, "provider loses its collateral");
        assertEq(market.burned(), burn, "burned total");
        _assertBooks(_parties(), 0);
    }

    // ------------------------------------------------------------------ the attack table

    /// 1a: a requester's own validator (a second address) can never judge a provider that does not trust it:
    /// refused at post and at assignProvider.
    function test_post__untrustedValidator__refusedAtPostAndAssign() public {
        address puppet = address(0x5EC0);
        _register(puppet, 0);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ValidatorNotTrusted.selector, provider, puppet));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, puppet), "");
        uint256 id = _post(address(0), puppet); // pending: no provider consented to anything yet
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ValidatorNotTrusted.selector, provider, puppet));
        market.assignProvider(id, provider, "");
        // trust is the provider's own, and it can take it back
        _trust(provider, puppet);
        assertTrue(market.trusts(provider, puppet), "trusted");
        vm.prank(provider);
        market.setTrust(puppet, false);
        assertTrue(!market.trusts(provider, puppet), "untrusted");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ValidatorNotTrusted.selector, provider, puppet));
        market.assignProvider(id, provider, "");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, provider));
        market.setTrust(provider, true);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, address(0)));
        market.setTrust(address(0), true);
    }

    /// 1b: a silent validator: the requester is refunded but never got a requester locator (nothing that opens
    /// the result was ever emitted for it), the provider gets its collateral back, the validator's record counts
    /// a missed verdict and it earns nothing.
    function test_expire__silentValidator__refundedWithoutResultCollateralBackMissedCounted() public {
        vm.recordLogs();
        uint256 id = _post(provider, validator);
        _result(id, keccak256("r"));
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlineNotReached.selector, id, block.timestamp + WINDOW));
        market.expire(id);
        vm.warp(block.timestamp + WINDOW + 1);
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlinePassed.selector, id, block.timestamp - 1));
        market.submitVerdict(id, keccak256("r"), true, "late");
        vm.prank(outsider);
        market.expire(id);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_countLogs(logs, ITaskMarket.VerdictSubmitted.selector), 0, "no requester locator ever");
        assertEq(_countLogs(logs, ITaskMarket.TaskExpired.selector), 1, "expired");
        assertTrue(_status(id) == ITaskMarket.Status.Expired, "expired");
        assertEq(market.creditOf(requester), PRICE + FEE, "requester refunded");
        assertEq(market.creditOf(provider), COLLATERAL, "provider's collateral back");
        assertEq(market.creditOf(validator), 0, "silent validator earns nothing");
        assertEq(market.getWorker(validator).missed, 1, "missed verdict on its record");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Expired));
        market.rate(id, 1, 0);
        _assertBooks(_parties(), 0);
    }

    /// 1d: a rigged validate mode (or a crashing script) ends the task at once with a report: the requester pays
    /// the failure fee (10% of the price; the provider keeps it less the 1% burn) and gets the rest back.
    function test_reportFailure__riggedValidateMode__requesterPaysFailureFee() public {
        uint256 id = _post(provider, validator);
        vm.prank(provider);
        market.reportFailure(id, REPORT);
        assertTrue(_status(id) == ITaskMarket.Status.Failed, "failed");
        uint256 burn = FAILURE_FEE / 100;
        assertEq(market.creditOf(provider), FAILURE_FEE - burn, "provider keeps the failure fee less the burn");
        assertEq(market.creditOf(requester), PRICE - FAILURE_FEE + FEE, "requester pays the failure fee, no more");
        assertEq(market.creditOf(validator), 0, "validator not involved");
        assertEq(market.burned(), burn, "burned");
        assertEq(market.openTaskCount(), 0, "settled at once");
        _assertBooks(_parties(), 0);
        // the failed task is rated like any paid task, the validator not at all
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidRating.selector, 3));
        market.rate(id, 2, 3);
        vm.prank(requester);
        market.rate(id, 2, 0);
        IRatings.Record memory p = ratings.recordOf(provider, IRatings.Role.Provider);
        assertEq(p.weightGwei, (FAILURE_FEE - burn) / 1 gwei, "weight = the failure fee paid");
        assertEq(ratings.recordOf(validator, IRatings.Role.Validator).count, 0, "validator unrated");
    }

    /// Failure reports are bounded (1..1024 bytes), only from the provider, only while executing, in time.
    function test_reportFailure__guards__eachRefusedWithItsError() public {
        uint256 id = _post(provider, validator);
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidReport.selector, 0));
        market.reportFailure(id, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidReport.selector, 1025));
        market.reportFailure(id, new bytes(1025));
        market.reportFailure(id, new bytes(1024));
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Failed));
        market.reportFailure(id, REPORT);
        vm.stopPrank();
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, id, validator));
        market.reportFailure(id, REPORT);
        uint256 late = _post(provider, validator);
        vm.warp(block.timestamp + TIMEOUT + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlinePassed.selector, late, block.timestamp - 1));
        market.reportFailure(late, REPORT);
    }

    /// 1e: a rejected task (and any settled task that paid nobody) cannot be rated, so a competitor cannot be
    /// dragged down by rejecting its work.
    function test_rate__rejectedTask__refused() public {
        uint256 id = _post(provider, validator);
        _result(id, keccak256("r"));
        _verdict(id, keccak256("r"), false);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Rejected));
        market.rate(id, 1, 1);
        assertEq(ratings.recordOf(provider, IRatings.Role.Provider).count, 0, "no rating recorded");
        uint256 cancelled = _post(address(0), validator);
        vm.prank(requester);
        market.cancel(cancelled);
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, cancelled, ITaskMarket.Status.Cancelled)
        );
        market.rate(cancelled, 1, 0);
    }

    /// 2a: a self-dealt rating (own requester, own provider, own trusted validator) burns 1% of what it moves
    /// and weighs only the wei it paid; a farm of 0-price tasks buys no weight at all, so the score stays at the
    /// prior while an honest, paid record moves it.
    function test_rate__selfDealtFarm__burnsOnePercentWeighsOnlyWhatItPaid() public {
        address farmer = address(0xFA12);
        address farmValidator = address(0xFA13);
        _register(farmer, 0);
        _register(farmValidator, 0);
        _trust(farmer, farmValidator);
        vm.deal(requester, 1000 ether);
        // ten 0-price, 0-fee tasks rated 5: no weight, no score change
        for (uint256 i = 0; i < 10; i++) {
            vm.prank(requester);
            uint256 id = market.post(
                keccak256(abi.encode(i)),
                ITaskMarket.Terms({provider: farmer, validator: farmValidator, price: 0, validatorFee: 0, timeout: TIMEOUT}),
                ""
            );
            vm.prank(farmer);
            market.submitResult(id, keccak256(abi.encode("r", i)), "");
            vm.prank(farmValidator);
            market.submitVerdict(id, keccak256(abi.encode("r", i)), true, "");
            vm.prank(requester);
            market.rate(id, 5, 5);
        }
        IRatings.Record memory r = ratings.recordOf(farmer, IRatings.Role.Provider);
        assertEq(r.count, 10, "ten ratings");
        assertEq(r.averageMilli, 5000, "raw average 5");
        assertEq(r.weightGwei, 0, "no weight");
        assertEq(ratings.scoreOf(farmer, IRatings.Role.Provider), 3000, "score stays at the prior");
        // one paid self-dealt task: 1% of price and fee burned, weight = exactly what the farmer was paid
        uint256 burnedBefore = market.burned();
        vm.prank(requester);
        uint256 paid = market.post{value: PRICE + FEE}(
            keccak256("paid"), _terms(farmer, farmValidator), ""
        );
        _resultBy(farmer, paid, keccak256("paid r"));
        vm.prank(farmValidator);
        market.submitVerdict(paid, keccak256("paid r"), true, "");
        vm.prank(requester);
        market.rate(paid, 5, 5);
        assertEq(market.burned() - burnedBefore, PRICE_BURN + FEE_BURN, "the farm burned 1% of what it moved");
        r = ratings.recordOf(farmer, IRatings.Role.Provider);
        assertEq(r.weightGwei, (PRICE - PRICE_BURN) / 1 gwei, "weighs what it paid");
        uint256 prior = Ratings(address(ratings)).PRIOR_WEIGHT_GWEI();
        assertEq(
            ratings.scoreOf(farmer, IRatings.Role.Provider),
            (3000 * prior + 5000 * r.weightGwei) / (prior + r.weightGwei),
            "Bayesian score"
        );
        assertEq(ratings.recordOf(farmValidator, IRatings.Role.Validator).weightGwei, (FEE - FEE_BURN) / 1 gwei, "v");
        // the plain average and count still show the farm; only the score discounts it
        (uint256 sum, uint256 count, uint256 avg) = ratings.stats(farmer);
        assertEq(sum, 55, "sum");
        assertEq(count, 11, "count");
        assertEq(avg, 5000, "average");
    }

    /// 2c: a completed task keeps its rating open for ever: no deadline passes that lets the provider dodge it
    /// (expire refuses a settled task), and the requester rates long after.
    function test_rate__afterCompletion__cannotBeDodged() public {
        uint256 id = _post(provider, validator);
        _result(id, keccak256("r"));
        _verdict(id, keccak256("r"), true);
        vm.warp(block.timestamp + 365 days);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Completed));
        market.expire(id);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotRequester.selector, id, provider));
        market.rate(id, 5, 5);
        vm.prank(requester);
        market.rate(id, 1, 0);
        assertEq(ratings.recordOf(provider, IRatings.Role.Provider).sum, 1, "the requester's rating recorded");
        assertEq(ratings.recordOf(validator, IRatings.Role.Validator).count, 0, "validator left unrated (0)");
    }

    /// M5: no worker is drafted as a validator below its asking price (its consent to the fee).
    function test_post__feeBelowValidatorAskingPrice__refused() public {
        vm.prank(validator);
        market.update(keccak256("v2"), 0.2 ether, true);
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(ITaskMarket.TaskMarket__PriceTooLow.selector, validator, 0.2 ether, FEE)
        );
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, validator), "");
        ITaskMarket.Terms memory t = _terms(provider, validator);
        t.validatorFee = 0.2 ether;
        vm.prank(requester);
        market.post{value: PRICE + 0.2 ether}(keccak256("t"), t, "");
        // a validator is required
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, address(0)));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, address(0)), "");
    }

    // ------------------------------------------------------------------ payees, force-feeding, copiers

    /// A payee that re-enters withdraw from its receive hook gets its credit once, never twice.
    function test_withdraw__reentrantPayee__reentryRefusedPaidOnce() public {
        ReentrantPayee attacker = new ReentrantPayee(address(market));
        vm.prank(address(attacker));
        market.register(keccak256("attacker"), 0, true);
        _trust(address(attacker), validator);
        uint256 id = _post(address(attacker), validator);
        _resultBy(address(attacker), id, keccak256("r"));
        _verdict(id, keccak256("r"), true);
        // leave only the attacker's own credit in the market (and the burn): a second payout would take others'
        vm.prank(validator);
        market.withdraw();

        attacker.setAttack(abi.encodeCall(TaskMarket.withdraw, ()));
        uint256 owed = PRICE - PRICE_BURN + COLLATERAL;
        uint256 before = address(attacker).balance;
        vm.prank(address(attacker));
        market.withdraw();
        assertEq(address(attacker).balance - before, owed, "attacker paid once");
        assertEq(attacker.attempts(), 1, "attempted");
        assertEq(attacker.successes(), 0, "re-entry refused");
        assertTrue(attacker.lastError() == ITaskMarket.TaskMarket__Reentrancy.selector, "refused by the lock");
        assertEq(address(market).balance, market.burned(), "only the burn is left");

        // re-entering through withdrawTo is refused the same way
        attacker.setAttack(abi.encodeCall(TaskMarket.withdrawTo, (payable(address(attacker)))));
        uint256 id2 = _post(address(attacker), validator);
        vm.prank(address(attacker));
        market.reportFailure(id2, REPORT);
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
        _trust(address(payee), validator);
        uint256 id = _post(address(payee), validator);
        _resultBy(address(payee), id, keccak256("r"));
        _verdict(id, keccak256("r"), true);
        uint256 owed = PRICE - PRICE_BURN + COLLATERAL;

        vm.prank(address(payee));
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TransferFailed.selector, address(payee), owed));
        market.withdraw();
        assertEq(market.creditOf(address(payee)), owed, "credit kept after a failed withdraw");

        uint256 before = validator.balance;
        vm.prank(validator);
        market.withdraw();
        assertEq(validator.balance - before, FEE - FEE_BURN, "the validator is paid regardless");

        address wallet = address(0xCAFE);
        vm.prank(address(payee));
        market.withdrawTo(payable(wallet));
        assertEq(wallet.balance, owed, "credit recovered through withdrawTo");
        assertEq(address(market).balance, market.burned(), "only the burn is left");
    }

    /// Ether forced in by selfdestruct is nobody's credit and breaks no accounting: every task still settles.
    function test_forceFeed__selfdestruct__accountingUnbroken() public {
        uint256 id = _post(provider, validator);
        ForceFeeder feeder = new ForceFeeder{value: 3 ether}();
        feeder.feed(payable(address(market)));
        assertEq(address(market).balance, PRICE + FEE + 3 ether, "forced in");
        _result(id, keccak256("r"));
        _assertBooks(_parties(), 3 ether);
        _verdict(id, keccak256("r"), false);
        _assertBooks(_parties(), 3 ether);
        vm.prank(requester);
        market.withdraw();
        vm.prank(validator);
        market.withdraw();
        assertEq(address(market).balance, 3 ether + market.burned(), "only the forced ether and the burn remain");
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NothingToWithdraw.selector, outsider));
        market.withdraw();
    }

    /// A copier (another provider) replaying a committed result hash commits it to its own task only: the honest
    /// task keeps its commitment and is paid; the copied task is judged on its own (the package names another
    /// task) and rejected: the copier loses its collateral.
    function test_submitResult__copierReplaysCommitment__boundToItsOwnTask() public {
        address copier = address(0xC0C0);
        _register(copier, 0);
        _trust(copier, validator);
        uint256 honest = _post(provider, validator);
        uint256 copied = _post(copier, validator);
        bytes32 h = keccak256("honest result");
        _result(honest, h);
        _resultBy(copier, copied, h);
        assertTrue(market.resultOf(honest) == _commitment(h), "honest commitment kept");
        assertTrue(market.resultOf(copied) == _commitment(h), "copied commitment bound to the copier's task");
        vm.deal(copier, COLLATERAL);
        vm.prank(copier);
        vm.expectRevert(
            abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, copied, ITaskMarket.Status.Validating)
        );
        market.submitResult{value: COLLATERAL}(copied, keccak256("copier's second try"), "");
        bytes32 wrong = keccak256("other");
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongResult.selector, copied, wrong));
        market.submitVerdict(copied, wrong, true, "");

        _verdict(honest, h, true);
        _verdict(copied, h, false); // the package's meta.json names the honest task
        assertEq(market.creditOf(provider), PRICE - PRICE_BURN + COLLATERAL, "honest provider paid");
        assertEq(market.creditOf(copier), 0, "copier paid nothing, collateral lost");
        assertEq(market.creditOf(requester), PRICE + FEE, "copied task refunded");
    }

    /// An outsider calling every state-changing function is refused with the right error.
    function test_everyFunction__outsider__refusedWithCustomError() public {
        uint256 id = _post(provider, validator);
        vm.startPrank(outsider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotRequester.selector, id, outsider));
        market.assignProvider(id, provider, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, id, outsider));
        market.submitResult(id, keccak256("x"), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, id, outsider));
        market.reportFailure(id, REPORT);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, id, outsider));
        market.decline(id, "x");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.publishOffer("{}");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotValidator.selector, id, outsider));
        market.submitVerdict(id, keccak256("x"), true, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotRequester.selector, id, outsider));
        market.rate(id, 5, 0);
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
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__NotMarket.selector, outsider));
        ratings.rate(provider, 5, 1 ether, validator, 5, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__NotMarket.selector, outsider));
        ratings.track(outsider);
        // a registered worker that is not the task's validator (the provider itself) is refused too
        vm.stopPrank();
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotValidator.selector, id, provider));
        market.submitVerdict(id, keccak256("x"), true, "");
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, id, other));
        market.submitResult(id, keccak256("x"), "");
        // unknown tasks
        vm.startPrank(outsider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.submitResult(99, keccak256("x"), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.reportFailure(99, REPORT);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.submitVerdict(99, keccak256("x"), true, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.expire(99);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.cancel(99);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.rate(99, 5, 0);
        vm.stopPrank();
        // the outsiders' calls changed nothing
        assertTrue(_status(id) == ITaskMarket.Status.Executing, "state unchanged");
        assertEq(address(market).balance, PRICE + FEE, "escrow unchanged");
    }

    // ------------------------------------------------------------------ every silent party has a rule

    function test_expire__silentProvider__requesterRefunded() public {
        uint256 id = _post(provider, validator);
        vm.warp(block.timestamp + TIMEOUT + 1);
        vm.prank(outsider);
        vm.expectEmit(true, true, true, true, address(market));
        emit ITaskMarket.TaskExpired(id, requester, provider, ITaskMarket.Status.Executing, PRICE + FEE, 0);
        market.expire(id);
        assertEq(market.creditOf(requester), PRICE + FEE, "full refund");
        assertEq(market.creditOf(provider), 0, "silent provider earns nothing");
        assertEq(market.getWorker(validator).missed, 0, "the validator missed nothing");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Expired));
        market.expire(id);
    }

    function test_expire__pendingUnassigned__requesterRefunded() public {
        uint256 id = _post(address(0), validator);
        vm.warp(block.timestamp + TIMEOUT + 1);
        market.expire(id);
        assertEq(market.creditOf(requester), PRICE + FEE, "full refund");
    }

    // ------------------------------------------------------------------ decline: a provider gives up a task

    /// The honest decline: the whole escrow back to the requester at once, nobody paid, nothing burned, the task
    /// out of the open set, the provider still available (naming it never took it out of the pool).
    function test_decline__executing__requesterRefundedFullEscrowNothingBurned() public {
        uint256 id = _post(provider, validator);
        uint256 available = market.availableWorkerCount();
        bytes memory reason = "needs runtime ichain-torch; this provider has ichain-runtime";
        vm.prank(provider);
        vm.expectEmit(true, true, true, true, address(market));
        emit ITaskMarket.TaskDeclined(id, provider, reason);
        market.decline(id, reason);
        assertTrue(_status(id) == ITaskMarket.Status.Declined, "declined");
        assertEq(uint8(ITaskMarket.Status.Declined), 10, "appended after Expired");
        assertEq(market.creditOf(requester), PRICE + FEE, "price + fee refunded");
        assertEq(market.creditOf(provider), 0, "the provider earns nothing");
        assertEq(market.creditOf(validator), 0, "the validator earns nothing");
        assertEq(market.burned(), 0, "nothing burned");
        assertEq(market.openTaskCount(), 0, "out of the open set");
        assertEq(market.availableWorkerCount(), available, "availability unchanged");
        assertTrue(market.getWorker(provider).available, "the provider stays available");
        _assertBooks(_parties(), 0);
        vm.prank(requester);
        market.withdraw();
        assertEq(address(market).balance, 0, "every wei paid out");
    }

    /// A decline in the middle of the open set moves the last task into its place (swap-and-pop).
    function test_decline__middleOfOpenSet__lastTaskMovedAndIndexed() public {
        uint256 a = _post(provider, validator);
        uint256 b = _post(provider, validator);
        uint256 c = _post(address(0), validator);
        vm.prank(provider);
        market.decline(a, "no GPU");
        uint256[] memory open = market.openTasks(0, 10);
        assertEq(open.length, 2, "two open");
        assertEq(open[0], c, "the last task moved into the gap");
        assertEq(market.getTask(c).poolIndex, 0, "and knows its position");
        assertEq(open[1], b, "the other task stays");
        _assertBooks(_parties(), 0);
    }

    /// Every cheating decline is refused and moves no wei: by the requester, the validator, another worker or
    /// a stranger; on a pending task (no provider), after the result is committed (the provider cannot take its
    /// collateral back), after the deadline (expire settles it), twice, with no reason or an oversized one.
    function test_decline__guards__eachRefusedWithItsError() public {
        uint256 id = _post(provider, validator);
        address[4] memory cheats = [requester, validator, other, outsider];
        for (uint256 i = 0; i < cheats.length; i++) {
            vm.prank(cheats[i]);
            vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, id, cheats[i]));
            market.decline(id, "x");
        }
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TaskNotFound.selector, 99));
        market.decline(99, "x");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidReport.selector, 0));
        market.decline(id, "");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidReport.selector, 1025));
        market.decline(id, new bytes(1025));
        vm.prank(provider);
        market.decline(id, new bytes(1024)); // the longest reason is taken
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Declined));
        market.decline(id, "again");

        uint256 pending = _post(address(0), validator);
        vm.prank(provider); // a registered worker that was never named
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotProvider.selector, pending, provider));
        market.decline(pending, "x");

        uint256 committed = _post(provider, validator);
        _result(committed, keccak256("r"));
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, committed, ITaskMarket.Status.Validating)
        );
        market.decline(committed, "changed my mind");

        uint256 late = _post(provider, validator);
        uint256 deadline = market.getTask(late).deadline;
        vm.warp(deadline + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlinePassed.selector, late, deadline));
        market.decline(late, "too late");
        // only the one honest decline moved money: price + fee to the requester
        assertEq(market.creditOf(requester), PRICE + FEE, "one refund");
        assertEq(market.creditOf(provider), 0, "the provider got nothing");
        _assertBooks(_parties(), 0);
    }

    /// Decline then expire (or cancel, rate, a result, a failure report): a declined task is settled for good,
    /// so the requester is refunded exactly once and the provider cannot turn it into a paid path.
    function test_decline__thenEveryOtherExit__refusedRefundedOnce() public {
        uint256 id = _post(provider, validator);
        vm.prank(provider);
        market.decline(id, "no GPU");
        ITaskMarket.Status declined = ITaskMarket.Status.Declined;
        vm.warp(block.timestamp + TIMEOUT + WINDOW + 1);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, declined));
        market.expire(id);
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, declined));
        market.cancel(id);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, declined));
        market.rate(id, 1, 0);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, declined));
        market.assignProvider(id, provider, "");
        vm.stopPrank();
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, declined));
        market.submitResult{value: COLLATERAL}(id, keccak256("r"), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, declined));
        market.reportFailure(id, REPORT);
        vm.stopPrank();
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, declined));
        market.submitVerdict(id, keccak256("r"), true, "");
        assertEq(market.creditOf(requester), PRICE + FEE, "refunded once");
        vm.prank(requester);
        market.withdraw();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NothingToWithdraw.selector, requester));
        market.withdraw();
        assertEq(address(market).balance, 0, "nothing stranded, nothing paid twice");
    }

    // ------------------------------------------------------------------ offers: the document lives in the log

    function test_publishOffer__worker__hashAndBlockStoredDocumentOnlyInTheLog() public {
        bytes memory offer = bytes('{"gpu":"H200","memory_gib":139,"runtimes":["ichain-torch"]}');
        vm.roll(4242);
        vm.recordLogs();
        vm.prank(provider);
        market.publishOffer(offer);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "one event");
        assertTrue(logs[0].topics[0] == ITaskMarket.WorkerOffered.selector, "WorkerOffered");
        assertTrue(logs[0].topics[1] == bytes32(uint256(uint160(provider))), "indexed worker");
        assertTrue(logs[0].topics[2] == keccak256(offer), "indexed hash of the document");
        assertTrue(keccak256(abi.decode(logs[0].data, (bytes))) == keccak256(offer), "the document in the log");
        ITaskMarket.Worker memory w = market.getWorker(provider);
        assertTrue(w.offerHash == keccak256(offer), "hash stored");
        assertEq(w.offerBlock, 4242, "block stored");
        assertTrue(w.registered && w.available && w.price == ASKING, "the rest of the record untouched");

        // a new offer replaces the old one; the longest document is taken
        vm.roll(4300);
        bytes memory longest = new bytes(2048);
        vm.prank(provider);
        market.publishOffer(longest);
        w = market.getWorker(provider);
        assertTrue(w.offerHash == keccak256(longest) && w.offerBlock == 4300, "replaced");

        // leave clears both; a comeback starts without an offer
        vm.prank(provider);
        market.leave();
        w = market.getWorker(provider);
        assertTrue(w.offerHash == bytes32(0) && w.offerBlock == 0, "cleared on leave");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, provider));
        market.publishOffer(offer);
        vm.prank(provider);
        market.register(keccak256("back"), ASKING, true);
        w = market.getWorker(provider);
        assertTrue(w.offerHash == bytes32(0) && w.offerBlock == 0, "no offer after a comeback");
        assertEq(address(market).balance, 0, "an offer moves no ether");
    }

    function test_publishOffer__guards__eachRefusedWithItsError() public {
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.publishOffer("{}");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidOffer.selector, 0));
        market.publishOffer("");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidOffer.selector, 2049));
        market.publishOffer(new bytes(2049));
        ITaskMarket.Worker memory w = market.getWorker(provider);
        assertTrue(w.offerHash == bytes32(0) && w.offerBlock == 0, "nothing recorded");
    }

    // ------------------------------------------------------------------ guards of the lifecycle

    function test_lifecycle__guards__eachRefusedWithItsError() public {
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ZeroTaskHash.selector));
        market.post{value: PRICE + FEE}(bytes32(0), _terms(provider, validator), "");
        ITaskMarket.Terms memory t = _terms(provider, validator);
        t.timeout = 5;
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TimeoutOutOfBounds.selector, 5, 10, 300));
        market.post{value: PRICE + FEE}(keccak256("t"), t, "");
        t.timeout = 301;
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__TimeoutOutOfBounds.selector, 301, 10, 300));
        market.post{value: PRICE + FEE}(keccak256("t"), t, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongDeposit.selector, PRICE + FEE, PRICE));
        market.post{value: PRICE}(keccak256("t"), _terms(provider, validator), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, requester));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(requester, validator), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidValidator.selector, requester));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, requester), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, validator));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(validator, validator), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(outsider, validator), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__NotAWorker.selector, outsider));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, outsider), "");
        t = _terms(provider, validator);
        t.price = 0.1 ether;
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__PriceTooLow.selector, provider, ASKING, 0.1 ether));
        market.post{value: 0.1 ether + FEE}(keccak256("t"), t, "");
        vm.stopPrank();
        vm.prank(other);
        market.update(keccak256("o"), 0, false);
        _trust(provider, other);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WorkerUnavailable.selector, other));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(other, validator), "");
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WorkerUnavailable.selector, other));
        market.post{value: PRICE + FEE}(keccak256("t"), _terms(provider, other), "");

        uint256 id = _post(address(0), validator);
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, address(0)));
        market.assignProvider(id, address(0), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidProvider.selector, validator));
        market.assignProvider(id, validator, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Pending));
        market.rate(id, 3, 0);
        vm.expectRevert(
            abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlineNotReached.selector, id, block.timestamp + TIMEOUT)
        );
        market.expire(id);
        market.assignProvider(id, provider, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Executing));
        market.assignProvider(id, provider, "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Executing));
        market.cancel(id);
        vm.stopPrank();

        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Executing));
        market.submitVerdict(id, keccak256("r"), true, "");
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__ZeroResultHash.selector));
        market.submitResult{value: COLLATERAL}(id, bytes32(0), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongDeposit.selector, COLLATERAL, 0));
        market.submitResult(id, keccak256("r"), "");
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongDeposit.selector, COLLATERAL, COLLATERAL + 1));
        market.submitResult{value: COLLATERAL + 1}(id, keccak256("r"), "");
        vm.stopPrank();
        assertEq(market.collateralFor(PRICE, FEE), COLLATERAL, "collateralFor");
        _result(id, keccak256("r"));
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Validating));
        market.submitResult{value: COLLATERAL}(id, keccak256("r2"), "");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Validating));
        market.reportFailure(id, REPORT);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Validating));
        market.rate(id, 5, 0);
        _verdict(id, keccak256("r"), true);
        vm.prank(validator);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__WrongState.selector, id, ITaskMarket.Status.Completed));
        market.submitVerdict(id, keccak256("r"), true, "");
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidRating.selector, 0));
        market.rate(id, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidRating.selector, 6));
        market.rate(id, 6, 0);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidRating.selector, 6));
        market.rate(id, 5, 6);
        vm.stopPrank();

        uint256 late = _post(provider, validator);
        vm.warp(block.timestamp + TIMEOUT + 1);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__DeadlinePassed.selector, late, block.timestamp - 1));
        market.submitResult{value: COLLATERAL}(late, keccak256("late"), "");
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
        address last = market.availableWorkers(2, 1)[0];
        vm.prank(provider); // first of the pool leaves: the last one is swapped in
        market.leave();
        assertEq(market.availableWorkerCount(), 2, "two available");
        address[] memory left = market.availableWorkers(0, 2);
        assertTrue(left[0] == last && left[1] != provider && last != provider, "the last worker moved to the gap");
        assertEq(market.getWorker(last).poolIndex, 0, "and knows its new position");
        assertEq(market.availableWorkers(1, 5).length, 1, "a page reaching past the end stops at the set's size");
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
        // re-register keeps the old id and record
        uint32 oldId = market.getWorker(provider).id;
        vm.prank(provider);
        market.register(keccak256("again"), 0, true);
        assertEq(market.getWorker(provider).id, oldId, "permanent id");
        assertEq(market.workerAddress(oldId), provider, "id resolves");
        assertTrue(market.trusts(provider, validator), "trust kept across leave and comeback");
        vm.prank(provider); // still available: no change
        market.update(keccak256("again"), 2, true);
        address[] memory page = market.availableWorkers(0, 10);
        assertEq(page.length, 3, "validator, outsider and provider available");
        assertEq(market.availableWorkers(5, 10).length, 0, "past the end");
        assertEq(market.availableWorkers(0, 1).length, 1, "limited page");
    }

    function test_pools__openTasksPaged__statusFilter() public {
        uint256 a = _post(address(0), validator);
        uint256 b = _post(provider, validator);
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
        assertEq(market.getTask(c).poolIndex, 0, "moved task's index updated");
        assertEq(market.openTasks(1, 1).length, 1, "limited page");
        assertEq(market.openTasks(9, 1).length, 0, "past the end");
        vm.prank(requester);
        market.cancel(c);
        assertEq(market.creditOf(requester), 2 * (PRICE + FEE), "both refunded");
        assertEq(market.lastTaskId(), 3, "ids");
        ITaskMarket.Task memory none2 = market.getTask(42);
        assertTrue(none2.status == ITaskMarket.Status.None && none2.requester == address(0), "no such task");
    }

    // ------------------------------------------------------------------ Ratings in isolation (we are its market)

    function test_ratings__direct__onlyMarketValidRangeBayesianScore() public {
        Ratings r = new Ratings();
        assertEq(r.market(), address(this), "deployer is the market");
        assertEq(r.scoreOf(provider, IRatings.Role.Provider), 3000, "the prior, never rated");
        assertEq(r.recordOf(provider, IRatings.Role.Provider).weightGwei, 0, "untracked: no weight");
        vm.recordLogs();
        r.track(provider);
        r.track(provider); // idempotent: one event, the record initialised once
        assertEq(_countLogs(vm.getRecordedLogs(), IRatings.WorkerTracked.selector), 1, "tracked once");
        assertEq(r.recordOf(provider, IRatings.Role.Provider).weightGwei, 0, "tracked: still no weight");
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__InvalidRating.selector, 0));
        r.rate(provider, 0, 1 ether, validator, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__InvalidRating.selector, 6));
        r.rate(provider, 6, 1 ether, validator, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IRatings.Ratings__InvalidRating.selector, 6));
        r.rate(provider, 5, 1 ether, validator, 6, 0);
        (,, uint256 avg0) = r.stats(provider);
        assertEq(avg0, 0, "no rating yet");
        r.rate(provider, 5, 0.01 ether, validator, 4, 0.001 ether); // validator never tracked: still recorded
        r.rate(provider, 4, 0.01 ether, validator, 0, 0.001 ether);
        (uint256 sum, uint256 count, uint256 avg) = r.stats(provider);
        assertEq(sum, 9, "sum");
        assertEq(count, 2, "count");
        assertEq(avg, 4500, "average");
        // prior weight 0.01 ether at 3 stars + 0.02 ether at 4.5 stars -> 4.0
        assertEq(r.scoreOf(provider, IRatings.Role.Provider), 4000, "Bayesian score");
        IRatings.Record memory v = r.recordOf(validator, IRatings.Role.Validator);
        assertEq(v.count, 1, "validator rated once (0 = not rated)");
        assertEq(v.weightGwei, 1_000_000, "weight in gwei");
        assertEq(v.scoreMilli, uint256(3000 * 10_000_000 + 4000 * 1_000_000) / 11_000_000, "validator score");
    }

    function test_constructor__invalidWindows__reverts() public {
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidWindows.selector));
        new TaskMarket(0, 10, 300);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidWindows.selector));
        new TaskMarket(60, 0, 300);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidWindows.selector));
        new TaskMarket(60, 301, 300);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidWindows.selector));
        new TaskMarket(60, 10, uint256(type(uint24).max) + 1);
        vm.expectRevert(abi.encodeWithSelector(ITaskMarket.TaskMarket__InvalidWindows.selector));
        new TaskMarket(uint256(type(uint24).max) + 1, 10, 300);
        TaskMarket m = new TaskMarket(60, 10, 300);
        assertEq(m.validationWindow(), 60, "window");
        assertEq(m.minTimeout(), 10, "min");
        assertEq(m.maxTimeout(), 300, "max");
    }

    /// @dev What resultOf shows of a committed hash: its first 24 bytes (the open-task slot keeps them).
    function _commitment(bytes32 h) internal pure returns (bytes32) {
        return bytes32(uint256(h) >> 64 << 64);
    }
}
