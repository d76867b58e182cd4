import { dropoutMatrix } from './matrix.js';

dropoutMatrix('advertise');
