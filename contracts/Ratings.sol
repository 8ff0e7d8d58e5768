// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRatings} from "./interfaces/IRatings.sol";

/// @title Ratings
/// @notice Value-weighted rating records per worker and role, written only by the TaskMarket that deployed this
///         contract; the ranking score is a Bayesian average (see IRatings).
/// @dev One packed slot per worker and role (count | sum | weightGwei + 1 | weightedGwei). The weight is stored
///      plus one, so track() leaves both slots non-zero and a worker's first rating costs no more gas than the
///      next ones. The market's state machine rates each task once, so no per-task mapping is needed here.
contract Ratings is IRatings {
    /// @notice Weight of the prior (3 stars) in gwei: 0.01 ether of paid work.
    uint256 public constant PRIOR_WEIGHT_GWEI = 10_000_000;
    /// @notice The prior's score x 1000 (3 stars).
    uint256 public constant PRIOR_SCORE_MILLI = 3000;

    struct Packed {
        uint32 count;
        uint40 sum; // <= 5 * count
        // gwei paid, plus one; 2^88 gwei is ~3e17 ether, far beyond any worker's paid volume
        uint88 weightPlusOne;
        uint96 weightedGwei; // <= 5 * weight
    }

    /// @inheritdoc IRatings
    address public immutable market;

    mapping(address worker => Packed[2] byRole) private _records;

    constructor() {
        market = msg.sender;
    }

    modifier onlyMarket() {
        if (msg.sender != market) revert Ratings__NotMarket(msg.sender);
        _;
    }

    /// @inheritdoc IRatings
    function track(address worker) external onlyMarket {
        Packed[2] storage r = _records[worker];
        if (r[0].weightPlusOne != 0) return;
        r[0].weightPlusOne = 1;
        r[1].weightPlusOne = 1;
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
        _add(_records[provider][uint8(Role.Provider)], providerRating, providerPaidWei);
        if (validatorRating != 0) _add(_records[validator][uint8(Role.Validator)], validatorRating, validatorPaidWei);
    }

    /// @inheritdoc IRatings
    function recordOf(address worker, Role role) external view returns (Record memory) {
        return _record(_records[worker][uint8(role)]);
    }

    /// @inheritdoc IRatings
    function stats(address worker) external view returns (uint256 sum, uint256 count, uint256 averageMilli) {
        Record memory r = _record(_records[worker][uint8(Role.Provider)]);
        (sum, count, averageMilli) = (r.sum, r.count, r.averageMilli);
    }

    /// @inheritdoc IRatings
    function scoreOf(address worker, Role role) external view returns (uint256) {
        return _record(_records[worker][uint8(role)]).scoreMilli;
    }

    /// @dev One rating weighing the gwei its task paid (sub-gwei payments weigh nothing); checked arithmetic: the
    ///      fields hold far more than any real volume, and a revert beats a wrapped record.
    function _add(Packed storage p, uint8 rating, uint256 paidWei) private {
        // the market pays at most a uint96 amount per task, so the gwei fit in 67 bits and the narrowing
        // casts are exact; the sums are checked in the fields' own widths
        uint88 paidGwei = uint88(paidWei / 1 gwei);
        Packed memory s = p;
        p.count = s.count + 1;
        p.sum = s.sum + rating;
        p.weightPlusOne = (s.weightPlusOne == 0 ? 1 : s.weightPlusOne) + paidGwei;
        p.weightedGwei = s.weightedGwei + uint96(rating) * paidGwei;
    }

    function _record(Packed memory s) private pure returns (Record memory r) {
        r.count = s.count;
        r.sum = s.sum;
        r.weightGwei = s.weightPlusOne == 0 ? 0 : s.weightPlusOne - 1;
        r.weightedGwei = s.weightedGwei;
        r.averageMilli = r.count == 0 ? 0 : (r.sum * 1000) / r.count;
        r.scoreMilli =
            (PRIOR_SCORE_MILLI * PRIOR_WEIGHT_GWEI + 1000 * r.weightedGwei) / (PRIOR_WEIGHT_GWEI + r.weightGwei);
    }
}
