// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRatings} from "./interfaces/IRatings.sol";

/// @title Ratings
/// @notice Value-weighted rating records per worker and role, written only by the TaskMarket that deployed this
///         contract; the ranking score is a Bayesian average (see IRatings).
/// @dev One packed slot per worker and role (count | sum | weightGwei + 1 | weightedGwei). The weight is stored
///      plus one, so track() leaves both slots non-zero and a worker's first rating costs no more gas than the
///      next ones (and a rating is one read and one write). The market's state machine rates each task once, so
///      no per-task mapping is needed here.
contract Ratings is IRatings {
    /// @notice Weight of the prior (3 stars) in gwei: 0.01 ether of paid work.
    uint256 public constant PRIOR_WEIGHT_GWEI = 10_000_000;
    /// @notice The prior's score x 1000 (3 stars).
    uint256 public constant PRIOR_SCORE_MILLI = 3000;

    // One slot per worker and role, packed by hand so that a rating is one read and one write:
    // count (bits 0..31) | sum (32..71, <= 5 * count) | weight in gwei plus one (72..159; 2^88 gwei is ~3e17 ether,
    // far beyond any worker's paid volume) | weighted gwei (160..255, <= 5 * weight).
    uint256 private constant _SUM_SHIFT = 32;
    uint256 private constant _WEIGHT_SHIFT = 72;
    uint256 private constant _WEIGHTED_SHIFT = 160;

    /// @inheritdoc IRatings
    address public immutable market;

    mapping(address worker => uint256[2] byRole) private _records;

    constructor() {
        market = msg.sender;
    }

    modifier onlyMarket() {
        if (msg.sender != market) revert Ratings__NotMarket(msg.sender);
        _;
    }

    /// @inheritdoc IRatings
    function track(address worker) external onlyMarket {
        uint256[2] storage r = _records[worker];
        if (r[0] != 0) return;
        // weight 0 stored as 1: the slots are non-zero from now on
        r[0] = 1 << _WEIGHT_SHIFT;
        r[1] = 1 << _WEIGHT_SHIFT;
        emit WorkerTracked(worker);
    }

    /// @inheritdoc IRatings
    function rate(
        address provider,
        uint8 providerRating,
        uint256 providerPaidWei,
        address validator,
        uint8 validatorRating,
        uint256 validatorPaidWei
    ) external onlyMarket {
        if (providerRating == 0 || providerRating > 5) revert Ratings__InvalidRating(providerRating);
        if (validatorRating > 5) revert Ratings__InvalidRating(validatorRating);
        _add(_records[provider], uint256(Role.Provider), providerRating, providerPaidWei);
        if (validatorRating != 0) _add(_records[validator], uint256(Role.Validator), validatorRating, validatorPaidWei);
    }

    /// @inheritdoc IRatings
    function recordOf(address worker, Role role) external view returns (Record memory) {
        return _record(_records[worker][uint256(role)]);
    }

    /// @inheritdoc IRatings
    function stats(address worker) external view returns (uint256 sum, uint256 count, uint256 averageMilli) {
        Record memory r = _record(_records[worker][uint256(Role.Provider)]);
        (sum, count, averageMilli) = (r.sum, r.count, r.averageMilli);
    }

    /// @inheritdoc IRatings
    function scoreOf(address worker, Role role) external view returns (uint256) {
        return _record(_records[worker][uint256(role)]).scoreMilli;
    }

    /// @dev One rating weighing the gwei its task paid (sub-gwei payments weigh nothing). The market pays at most a
    ///      uint96 amount per task, so the gwei fit in 67 bits and the narrowing casts of it are exact; the sums are
    ///      checked in the fields' own widths, so an overflow reverts instead of spilling into the next field.
    function _add(uint256[2] storage r, uint256 role, uint8 rating, uint256 paidWei) private {
        uint256 v = r[role];
        uint88 paidGwei = uint88(paidWei / 1 gwei);
        uint88 weightPlusOne = uint88(v >> _WEIGHT_SHIFT);
        uint32 count = uint32(v) + 1;
        uint40 sum = uint40(v >> _SUM_SHIFT) + rating;
        weightPlusOne = (weightPlusOne == 0 ? 1 : weightPlusOne) + paidGwei; // 0: a worker never tracked
        uint96 weighted = uint96(v >> _WEIGHTED_SHIFT) + uint96(rating) * paidGwei;
        r[role] = uint256(count) | (uint256(sum) << _SUM_SHIFT) | (uint256(weightPlusOne) << _WEIGHT_SHIFT)
            | (uint256(weighted) << _WEIGHTED_SHIFT);
    }

    function _unpack(uint256 v) private pure returns (uint256 count, uint256 sum, uint256 weight, uint256 weighted) {
        count = uint32(v);
        sum = uint40(v >> _SUM_SHIFT);
        uint256 weightPlusOne = uint88(v >> _WEIGHT_SHIFT);
        weight = weightPlusOne == 0 ? 0 : weightPlusOne - 1; // 0: never tracked
        weighted = v >> _WEIGHTED_SHIFT;
    }

    function _record(uint256 v) private pure returns (Record memory r) {
        (r.count, r.sum, r.weightGwei, r.weightedGwei) = _unpack(v);
        r.averageMilli = r.count == 0 ? 0 : (r.sum * 1000) / r.count;
        r.scoreMilli =
            (PRIOR_SCORE_MILLI * PRIOR_WEIGHT_GWEI + 1000 * r.weightedGwei) / (PRIOR_WEIGHT_GWEI + r.weightGwei);
    }
}
